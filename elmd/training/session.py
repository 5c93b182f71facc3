"""What the training stages share: building the model and data once per run, validation by
emotion accuracy, and writing the output folder.

A stage's output folder (format: :mod:`elmd.runs`; loaded back by :func:`elmd.inference.load`)::

    trainable.safetensors   the trainable tensors only (video Linear; + prefix for eerg)
    config.yaml             the resolved config, paths portable (llm.tokenizer = ./tokenizer.model)
    meta.json               format, stage, modules, per-epoch metrics, input fingerprints
    tokenizer.model         copy of the tokenizer used, so later commands use the same one
    metrics.jsonl, loss.png training curves;  checkpoints/  resumable checkpoints

Validation accuracy is the argmax over the label set's words of log P(word | prompt)
(:meth:`~elmd.models.elmd_model.ELMDModel.label_logprobs`), not free generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field
from pathlib import Path

import torch

from elmd.config import format_config
from elmd.io import atomic_write_bytes, atomic_write_json, file_sha256
from elmd.models.prompt import IGNORE, collate, label_word_ids
from elmd.runs import FORMAT, portable_config
from elmd.stages import get_stage
from elmd.training.data import FeatureStore, Split, fingerprints, labels_of, make_batch, prepare_split, video_tokens
from elmd.training.dist import DistInfo, all_reduce_sum, barrier, init_distributed
from elmd.training.loop import LoopSpec, TargetTokenLoss, fit, target_token_loss
from elmd.training.metrics_log import plot_curves

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig


@dataclass
class Session:
    """One stage's run: config, process info, tokenizer, model, feature store and encoded splits."""

    cfg: object
    stage: str
    out: Path
    info: DistInfo
    tokenizer: object
    labels: object
    model: torch.nn.Module
    store: FeatureStore | None
    train: Split
    valid: Split
    init: dict = field(default_factory=dict)
    """How the trainable part was initialised (stage eerg: from which rep output)."""
    show_progress: bool = True
    """Progress bars (rank 0 only)."""

    def batch(self, split: Split, idx: list[int]) -> dict:
        return make_batch(split, idx, self.tokenizer.pad_id, self.store, self.info.device)

    @property
    def micro_batch(self) -> int:
        return max(1, -(-self.cfg.train.batch_size // (self.info.world_size * self.cfg.train.grad_accum)))


def stage_out(cfg: ELMDConfig, stage: str, out: str | Path | None = None) -> Path:
    """The stage's output folder: ``out`` when given, else ``train.out``/STAGE."""
    return Path(out) if out else Path(cfg.train.out) / stage


def open_session(cfg: ELMDConfig, stage: str, out: str | Path | None = None, encoder=None, show_progress: bool = True) -> Session:
    """Tokenizer, frozen LLM + fresh projector, demonstrations, encoded splits and the video
    features of every sample (cache read / filled once), on this process's device."""
    from elmd.models.presets import build_elmd_model, load_tokenizer

    get_stage(stage)  # an unknown stage is a one-line error before any work
    info = init_distributed(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    tokenizer, labels = load_tokenizer(cfg), labels_of(cfg)
    index = None
    if cfg.prompt.use_demonstration:
        from elmd.training.data import open_index

        index = open_index(cfg)
    train = prepare_split(cfg, "train", tokenizer, labels, stage, index)
    valid = prepare_split(cfg, "valid", tokenizer, labels, stage, index, cfg.train.max_valid)
    store = None
    if video_tokens(cfg):
        store = FeatureStore(cfg.vision, encoder, cfg.train.features_in_memory)
        if cfg.train.features_in_memory:
            store.preload(train.videos + valid.videos, progress=show_progress and info.is_main)
        q_dim = store.q_dim
    else:
        from elmd.models.visual_encoder import LazyVisualEncoder

        q_dim = (encoder or LazyVisualEncoder(cfg.vision)).q_dim
    model = build_elmd_model(cfg, tokenizer, q_dim).to(info.device)
    if cfg.train.gradient_checkpointing:  # the prefix is passed into each checkpointed layer (elmd.models.grad_ckpt)
        from elmd.models.grad_ckpt import enable_checkpointing

        enable_checkpointing(model.llm)
    if video_tokens(cfg) and info.is_main and not any(train.videos):
        import sys

        print(f"warning: no sample of data.train ({cfg.data.train}) has a video — the video tokens are zeros and the "
              f"video Linear learns nothing from them; use --ablation wo_v (vision.use_video=false) for text-only data",
              file=sys.stderr)
    return Session(cfg, stage, stage_out(cfg, stage, out), info, tokenizer, labels, model, store, train, valid,
                   show_progress=show_progress)


def _prompt_only(encoded: dict) -> dict:
    """An encoded training example without its target (what label_logprobs continues)."""
    n = sum(1 for t in encoded["labels"] if t == IGNORE)
    return {"input_ids": encoded["input_ids"][:n], "video_mask": encoded["video_mask"][:n]}


@torch.no_grad()
def validate(s: Session, batch_size: int | None = None) -> dict:
    """valid_loss (mean target-token loss) and valid_accuracy (argmax over the label words),
    computed on this rank's share of the valid split and summed over ranks."""
    model, split, info = s.model, s.valid, s.info
    was_training = model.training
    model.eval()
    label_ids = label_word_ids(s.tokenizer, s.labels)
    loss_fn, bs = TargetTokenLoss(), batch_size or s.micro_batch
    from tqdm import tqdm

    mine = list(range(info.rank, len(split), info.world_size))
    sums = torch.zeros(3 + len(s.labels), dtype=torch.float64, device=info.device)  # loss, tokens, correct, per-label
    for i in tqdm(range(0, len(mine), bs), desc="validate", unit="batch", leave=False,
                  disable=not (s.show_progress and info.is_main) or None):
        idx = mine[i:i + bs]
        batch = s.batch(split, idx)
        labels = batch.pop("labels")
        sums[0] += loss_fn(model(**batch).logits, labels).double()
        sums[1] += split.target_tokens(idx)
        prompt = collate([_prompt_only(split.encoded[j]) for j in idx], s.tokenizer.pad_id)
        if "video_feats" in batch and prompt["video_mask"].any():
            prompt["video_feats"] = batch["video_feats"]
        prompt = {k: v.to(info.device) for k, v in prompt.items()}
        pred = model.label_logprobs(**prompt, label_ids=label_ids).argmax(-1).tolist()
        for j, p in zip(idx, pred):
            sums[2] += float(p == s.labels.index(split.samples[j].target_emotion))
            sums[3 + p] += 1
    all_reduce_sum(sums, info)
    model.train(was_training)
    return {"valid_loss": (sums[0] / sums[1].clamp(min=1)).item(), "valid_accuracy": (sums[2] / max(len(split), 1)).item(),
            "valid_predicted": {lab: int(sums[3 + k]) for k, lab in enumerate(s.labels.ids)}}


def label_prior_accuracy(s: Session) -> float:
    """Valid accuracy of always answering the most frequent training target (the label prior)."""
    from collections import Counter

    top = Counter(x.target_emotion for x in s.train.samples).most_common(1)[0][0]
    return sum(x.target_emotion == top for x in s.valid.samples) / max(len(s.valid), 1)


def train_mode(model: torch.nn.Module, gradient_checkpointing: bool = False) -> None:
    """Trainable parts in train mode (prefix dropout); the frozen LLM stays in eval mode (its own
    checkpointing, :mod:`elmd.models.grad_ckpt`, does not need the training flag)."""
    model.train()
    model.llm.eval()


def run(s: Session, lr: float, epochs: int, resume: bool = False, show_progress: bool = True,
        extra_meta: dict | None = None, loss_fn=target_token_loss) -> dict:
    """Train the model's trainable parameters, then write the output folder; returns meta.

    ``loss_fn(output, batch) -> {"loss": ..., parts}`` (:func:`~elmd.training.loop.target_token_loss`
    by default): a head adds its loss terms here without touching the loop."""
    cfg, tc = s.cfg, s.cfg.train
    params = [p for p in s.model.parameters() if p.requires_grad]
    train_mode(s.model, tc.gradient_checkpointing)
    from elmd.training.outputs import result_settings

    base_meta = {"stage": s.stage, **(extra_meta or {}), "settings": result_settings(cfg, s.stage)}

    def validate_epoch(epoch: int) -> dict:
        metrics = validate(s)
        train_mode(s.model, tc.gradient_checkpointing)  # back to: trainable parts train, frozen LLM eval
        return metrics

    spec = LoopSpec(s.model, params, len(s.train), lambda idx: s.batch(s.train, idx), s.train.target_tokens,
                    validate_epoch, lr, epochs, format_config(cfg), base_meta, loss_fn=loss_fn)
    s.out.mkdir(parents=True, exist_ok=True)
    history = fit(spec, tc, s.info, s.out, resume, show_progress)
    meta = {"format": FORMAT, **base_meta, "modules": modules_of(s.model), "epochs": history, "final": history[-1] if history else {},
            "label_prior_accuracy": label_prior_accuracy(s), "train_samples": len(s.train),
            "valid_samples": len(s.valid), "world_size": s.info.world_size,
            "q_dim": s.model.projector.q_dim, "fingerprints": fingerprints(cfg),
            "tokenizer": {"source": str(s.tokenizer.path), "sha256": file_sha256(s.tokenizer.path)}}
    if s.store is not None:
        meta["video_features"] = s.store.stats.as_dict()
    if s.info.is_main:
        write_outputs(s, meta)
    barrier(s.info)
    return meta


def modules_of(model) -> dict:
    """What :func:`elmd.inference.load` rebuilds: the projector's input size and the prefix settings."""
    from dataclasses import asdict

    from elmd.models.config import PrefixConfig

    prefix = None
    if model.prefix is not None:
        p = model.prefix
        hidden = p.trans[0].out_features if p.trans is not None else 0
        prefix = asdict(PrefixConfig(p.pre_seq_len, p.projection, hidden, p.dropout.p))
    return {"projector": {"q_dim": model.projector.q_dim}, "prefix": prefix}


def write_outputs(s: Session, meta: dict) -> Path:
    """trainable.safetensors + tokenizer.model + config.yaml + meta.json + loss.png, atomically."""
    from safetensors.torch import save

    from elmd.config import save_config

    out = s.out
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in s.model.trainable_state_dict().items()}
    atomic_write_bytes(out / "trainable.safetensors", save(tensors, metadata={"stage": s.stage}))
    tok = out / "tokenizer.model"
    if Path(s.tokenizer.path).resolve() != tok.resolve():
        atomic_write_bytes(tok, Path(s.tokenizer.path).read_bytes())
    saved = portable_config(s.cfg, out)
    saved.llm.tokenizer = "./tokenizer.model"
    saved.train.stage = s.stage
    save_config(saved, out / "config.yaml")
    atomic_write_json(out / "meta.json", meta)
    plot_curves(out / "metrics.jsonl", out / "loss.png")
    return out
