"""Stage `sticker` (PEGS, Zhang et al., ACL 2024; GILL, Koh et al., NeurIPS 2023): the LLM learns to end
a reply that carries a sticker with ``[IMG1..r]``, and the hidden states of that run learn to retrieve
(and describe, for Stable Diffusion) the reply's sticker. Registered in :mod:`elmd.stages`::

    elmd train --stage sticker --config tiny --set sticker.library=LIB [--set sticker.sd_path=SD] ...

It starts from a stage `eerg` output (``sticker.init_from``, default ``<train.out>/eerg``; its LLM
and tokenizer unless ``llm.*`` names them): its prefix and video Linear are loaded and stay frozen (``sticker.train_base=false``) or train jointly
(``true``). It adds r tokens after the LLM's vocabulary (:meth:`ELMDModel.attach_tokens`; only their
input / output rows train, the LLM stays frozen), writes the run into the targets of the replies
whose turn in ``data.train`` / ``data.valid`` carries a ``sticker`` (``elmd sticker attach``,
``import-stickerconv``), and trains the retrieval projection and, when ``sticker.sd_path`` is set,
the feature mapper (:class:`~elmd.heads.sticker.head_model.StickerModules`) with
L = λ1·L_lm + λ2·L_ret + λ3·L_gen (:class:`~elmd.heads.sticker.objective.StickerObjective`) through
the training loop's ``loss_fn`` hook: the same session, loop, checkpoints, ``--resume`` and
multi-process rules as stages rep / eerg.

Output folder: what every stage writes (``trainable.safetensors`` = video Linear + prefix + the
``[IMG]`` rows, ``meta.json`` with ``added_tokens``), plus ``sticker/`` (the projection and mapper,
read by the sticker head) and ``meta.json``'s ``sticker_valid`` (teacher-forced valid retrieval:
recall@1/5 of the gold sticker and emotion accuracy of the top-1 sticker).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from elmd.errors import DataError, ElmdError
from elmd.stages import StageSpec, register_stage
from elmd.training.session import Session

STAGE = "sticker"
SPEC = register_stage(StageSpec(STAGE, "emotion_response", ("projector", "prefix", "added_tokens", "sticker"),
                                "elmd.heads.sticker.stage:train_sticker", starts_from="eerg",
                                lr_key="eerg_lr", epochs_key="eerg_epochs"))
TRAINING_KEYS = ("library", "num_img_tokens", "num_ret_tokens", "ret_dim", "ret_pool", "ret_negatives", "key_emotion", "run_targets",
                 "temperature",
                 "mapper_hidden", "mapper_encoder_layers", "mapper_decoder_layers", "mapper_heads", "num_clip_tokens",
                 "prompt_dim", "lambda_lm", "lambda_ret", "lambda_gen", "sd_path", "init_from", "train_base", "lr", "epochs")
"""The ``sticker.*`` settings that decide the stage's weights (``--resume`` refuses others)."""


@dataclass
class StickerSession(Session):
    """A :class:`~elmd.training.session.Session` whose training batches carry ``sticker_row``."""

    rows: dict = field(default_factory=dict)
    """Split name -> library row of each sample's gold sticker (-1 = none)."""
    objective: object = None
    library: object = None

    def batch(self, split, idx: list[int]) -> dict:
        out = super().batch(split, idx)
        if split is self.train:  # validation batches go to the model as they are
            out["sticker_row"] = torch.tensor([self.rows["train"][i] for i in idx], device=self.info.device)
        return out


def eerg_dir(cfg) -> Path:
    return Path(cfg.sticker.init_from) if cfg.sticker.init_from else Path(cfg.train.out) / "eerg"


def check_eerg_output(folder: Path) -> dict:
    """The meta of the eerg output in ``folder``; a one-line ElmdError when there is none."""
    from elmd.runs import stage_output_meta

    return stage_output_meta(folder, "eerg", "to start stage sticker from — run `elmd train --stage eerg` first "
                             "or point sticker.init_from at its folder", "sticker.init_from")


def _with_eerg_llm(cfg, folder: Path, meta: dict):
    """``cfg`` reading the eerg output's LLM and tokenizer when it names none (the tiny preset would train
    another tokenizer on other data; a pre-trained tiny LM is ``llm.path`` of the eerg run)."""
    from elmd.config import with_overrides
    from elmd.io import file_sha256
    from elmd.models.presets import load_tokenizer
    from elmd.runs import run_config

    if not cfg.llm.tokenizer and not cfg.llm.path:
        llm = run_config(folder).llm
        sets = [f"llm.tokenizer={folder / 'tokenizer.model'}"] + ([f"llm.path={llm.path}"] if llm.path else [])
        return with_overrides(cfg, sets, "stage sticker")
    want = meta.get("tokenizer", {}).get("sha256")
    if want and want != file_sha256(load_tokenizer(cfg).path):
        raise ElmdError(f"{folder}: was trained with another tokenizer — set llm.tokenizer={folder / 'tokenizer.model'}")
    return cfg


def _load_eerg(s: Session, folder: Path, meta: dict) -> None:
    from elmd.models.config import PrefixConfig
    from elmd.runs import load_trainable

    saved = (meta.get("modules") or {}).get("prefix")
    prefix = PrefixConfig(**{f.name: saved[f.name] for f in fields(PrefixConfig)}) if saved else s.cfg.prefix
    s.model.attach_prefix(prefix, seed=s.cfg.train.seed)
    s.model.load_trainable_state_dict(load_trainable(folder))
    if not s.cfg.sticker.train_base:
        for p in list(s.model.projector.parameters()) + list(s.model.prefix.parameters()):
            p.requires_grad_(False)


def _targets(s: Session, library, with_mapper: bool):
    """Library vectors and (with a mapper) the SD caption embeddings of every library sticker."""
    from elmd.heads.sticker.objective import StickerTargets

    vectors, emotions = torch.as_tensor(library.vectors).float(), library.emotions.tolist()
    if not with_mapper:
        return StickerTargets(vectors, None, emotions)
    from elmd.heads.sticker.diffusion import StickerDiffusion, caption_targets
    from elmd.heads.sticker.library import Sticker

    sc = s.cfg.sticker
    diffusion = StickerDiffusion(sc.sd_path, sc, "cpu")
    if (diffusion.prompt_len, diffusion.prompt_dim) != (sc.num_clip_tokens, sc.prompt_dim):
        raise ElmdError(f"{sc.sd_path}: its text encoder gives {diffusion.prompt_len} x {diffusion.prompt_dim} embeddings — "
                        f"set sticker.num_clip_tokens={diffusion.prompt_len} sticker.prompt_dim={diffusion.prompt_dim}")
    stickers = [Sticker(r["id"], r["image"], r["emotion"], r.get("description", "")) for r in library.table]
    emb = caption_targets(diffusion, stickers, s.labels)
    return StickerTargets(vectors, torch.stack([emb[st.id] for st in stickers]), emotions)


def setup(cfg, out: str | Path | None = None, encoder=None, show_progress: bool = True) -> StickerSession:
    """Session with eerg's prefix + Linear loaded, ``[IMG1..r]`` added, gold stickers found and the sticker
    modules attached (as ``model.sticker``, so the loop trains and checkpoints them)."""
    from elmd.heads.sticker.data import response_stickers
    from elmd.heads.sticker.head import _FingerprintOnly
    from elmd.heads.sticker.head_model import StickerModules
    from elmd.heads.sticker.index import StickerLibrary
    from elmd.heads.sticker.objective import StickerObjective, append_img_run, sticker_rows
    from elmd.heads.sticker.tokens import img_token_names
    from elmd.training.session import open_session

    sc = cfg.sticker.validate()
    if not sc.library:
        raise ElmdError("stage sticker needs sticker.library — build one with `elmd sticker build-library`")
    folder = eerg_dir(cfg)
    eerg_meta = check_eerg_output(folder)
    cfg = _with_eerg_llm(cfg, folder, eerg_meta)
    library = StickerLibrary.load(sc.library, _FingerprintOnly(sc, cfg.vision))
    gold = {name: response_stickers(getattr(cfg.data, name)) for name in ("train", "valid")}
    if not gold["train"]:
        raise DataError(cfg.data.train, "no reply carries a 'sticker'", "attach stickers with `elmd sticker attach` "
                        "(or import StickerConv) and point data.train / data.valid at those files")
    base = open_session(cfg, STAGE, out, encoder, show_progress)
    s = StickerSession(**{f.name: getattr(base, f.name) for f in fields(Session)})
    _load_eerg(s, folder, eerg_meta)
    s.init = {"from_eerg": str(folder.resolve()), "eerg_final": eerg_meta.get("final"), "train_base": sc.train_base}
    img_ids = s.model.attach_tokens(sc.num_img_tokens, seed=cfg.train.seed).ids
    s.tokenizer.add_tokens(img_token_names(sc.num_img_tokens), img_ids)
    for split in (s.train, s.valid):
        s.rows[split.name] = sticker_rows(split.samples, gold[split.name], library, getattr(cfg.data, split.name))
        split.encoded = [append_img_run(e, img_ids, s.tokenizer.eos_id, sc.run_targets) if r >= 0 else e
                         for e, r in zip(split.encoded, s.rows[split.name])]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        modules = StickerModules(sc, s.model.llm.config.hidden_size, int(library.vectors.shape[1]), bool(sc.sd_path),
                                 tuple(s.labels.ids))
    s.model.add_module("sticker", modules.to(s.info.device))
    s.objective = StickerObjective(modules, img_ids, _targets(s, library, bool(sc.sd_path)))
    s.library = library
    modules.projection.text_center.copy_(_run_mean(s))
    return s


@torch.no_grad()
def _run_mean(s: StickerSession, batch_size: int = 16) -> torch.Tensor:
    """Mean over the training replies with a sticker of the pooled hidden states the retrieval projection reads
    (its ``text_center``; the same on every rank: every rank sees the whole split)."""
    from elmd.heads.sticker.tokens import gather_run, img_run_start

    model, ids = s.model, s.objective.img_ids
    was = model.training
    model.eval()
    idx = [i for i, r in enumerate(s.rows["train"]) if r >= 0]
    total = torch.zeros(model.sticker.hidden, dtype=torch.float64, device=s.info.device)
    for i in range(0, len(idx), batch_size):
        batch = s.batch(s.train, idx[i:i + batch_size])
        out = model(**{k: v for k, v in batch.items() if k not in ("labels", "sticker_row")})
        run = gather_run(out.hidden_states, img_run_start(batch["input_ids"], ids), len(ids))
        total += model.sticker.projection.pooled(model.sticker.split(run)[0]).double().sum(0)
    model.train(was)
    return (total / max(len(idx), 1)).float()


def _check_resume(s: StickerSession, settings: dict, resume: bool) -> None:
    import json

    from elmd.training.checkpoint import latest_checkpoint

    ck = latest_checkpoint(s.out) if resume else None
    if ck is None:
        return
    saved = json.loads((ck / "meta.json").read_text(encoding="utf-8")).get("sticker_settings")
    diff = sorted(k for k in settings if saved is not None and saved.get(k) != settings[k])
    if diff:
        raise ElmdError(f"{s.out}: its checkpoint was trained with other sticker.* settings ({', '.join(diff[:4])}) — "
                        "resume with the same settings or pass --overwrite")


def fit(s: StickerSession, resume: bool = False, show_progress: bool = True) -> dict:
    """Train for ``sticker.epochs`` (0 = train.eerg_epochs) at ``sticker.lr`` (0 = train.eerg_lr); writes the folder."""
    from elmd.training.dist import barrier
    from elmd.training.session import run

    sc, tc = s.cfg.sticker, s.cfg.train
    settings = {k: getattr(sc, k) for k in TRAINING_KEYS}
    _check_resume(s, settings, resume)
    a = s.model.added_tokens
    extra = {"init": s.init, "sticker_settings": settings,
             "added_tokens": {"names": list(s.tokenizer.added_ids), "ids": a.ids}}
    meta = run(s, sc.lr or tc.eerg_lr, sc.epochs or tc.eerg_epochs, resume, show_progress, extra, loss_fn=s.objective)
    if s.info.is_main:
        meta = finish_outputs(s, meta)
    barrier(s.info)
    return meta


def finish_outputs(s: StickerSession, meta: dict) -> dict:
    """``trainable.safetensors`` = the ELMD model's tensors (video Linear, prefix, ``[IMG]`` rows, frozen
    or not); ``sticker/`` = the projection and mapper; ``meta.json`` + ``sticker_valid``."""
    from safetensors.torch import save

    from elmd.heads.sticker.validate import valid_retrieval
    from elmd.io import atomic_write_bytes, atomic_write_json

    m = s.model
    own = {f"{name}.{k}": v for name in ("projector", "prefix", "added_tokens")
           for k, v in getattr(m, name).state_dict().items()}
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in own.items()}
    atomic_write_bytes(s.out / "trainable.safetensors", save(tensors, metadata={"stage": s.stage}))
    m.sticker.save(s.out / "sticker")
    meta["sticker_valid"] = asdict(valid_retrieval(s))
    atomic_write_json(s.out / "meta.json", meta)
    return meta


def train_sticker(cfg, out: str | Path | None = None, resume: bool = False, encoder=None, show_progress: bool = True) -> dict:
    s = setup(cfg, out, encoder, show_progress)
    meta = fit(s, resume, show_progress)
    meta["out"] = str(s.out)
    return meta
