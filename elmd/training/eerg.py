"""Stage ``eerg`` (paper Sec. 3.5, Eq. 11): emotion-enhanced response generation.

A p-tuning v2 prefix (:mod:`elmd.models.prefix`; ``prefix.pre_seq_len``, 128 as in ChatGLM2's
recipe, optional ``prefix.projection``) is attached to the frozen LLM, and the video Linear
is initialised from the ``rep`` output (``train.rep_dir``, default OUT/rep;
``train.init_from_rep=false`` = a fresh Linear, the 'w/o REP' ablation). Both train on the target
"emotion word + newline + response + eos". Defaults (paper): batch 16, AdamW, lr 2e-2. The loss
adds the emotion word's own term (``train.eerg_emotion_weight``, :mod:`elmd.training.emotion_loss`;
0 = the paper's plain loss), so that eerg keeps what rep learnt.

    setup(cfg)  ->  fit(session)  ->  validate(session)        (or train_eerg(cfg) for all three)

The output folder loads back with one call: :func:`elmd.inference.load`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from elmd.errors import ElmdError
from elmd.io import file_sha256
from elmd.runs import stage_output_meta
from elmd.training.session import Session, open_session, run
from elmd.training.session import validate as _validate

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

STAGE = "eerg"


def rep_dir(cfg: ELMDConfig) -> Path:
    return Path(cfg.train.rep_dir) if cfg.train.rep_dir else Path(cfg.train.out) / "rep"


def check_rep_output(folder: Path) -> dict:
    """The meta of the rep output in ``folder``; a one-line ElmdError when there is none."""
    return stage_output_meta(folder, "rep", "to initialise the video Linear from — run `elmd train --stage rep` first, "
                             "point train.rep_dir at its folder, or set train.init_from_rep=false (w/o REP)",
                             "train.rep_dir")


def load_rep_linear(s: Session, folder: Path) -> dict:
    """Copy the rep output's video Linear into ``s.model``; returns the rep meta."""
    from elmd.runs import load_trainable

    meta = check_rep_output(folder)
    want = meta.get("tokenizer", {}).get("sha256")
    if want and want != file_sha256(s.tokenizer.path):
        raise ElmdError(f"{folder}: was trained with another tokenizer than {s.tokenizer.path} — "
                        f"use the same data/tokenizer (llm.tokenizer={folder / 'tokenizer.model'})")
    state = {k: v for k, v in load_trainable(folder).items() if k.startswith("projector.")}
    s.model.load_trainable_state_dict(state, strict=False)
    return meta


def setup(cfg: ELMDConfig, out: str | Path | None = None, encoder=None, show_progress: bool = True) -> Session:
    """Session with the prefix attached and the Linear initialised from rep (unless w/o REP)."""
    folder = rep_dir(cfg)
    if cfg.train.init_from_rep:
        check_rep_output(folder)  # fail before the expensive setup
    s = open_session(cfg, STAGE, out, encoder, show_progress)
    s.model.attach_prefix(cfg.prefix, seed=cfg.train.seed)
    s.init = {"from_rep": str(folder.resolve()), "rep_final": load_rep_linear(s, folder).get("final")} \
        if cfg.train.init_from_rep else {"from_rep": None}
    return s


def loss_of(s: Session):
    """The loop's loss_fn: target tokens + ``train.eerg_emotion_weight`` x the emotion word's loss."""
    from elmd.models.prompt import label_word_ids
    from elmd.training.emotion_loss import EmotionWeightedLoss

    return EmotionWeightedLoss(label_word_ids(s.tokenizer, s.labels), s.cfg.train.eerg_emotion_weight)


def fit(s: Session, resume: bool = False, show_progress: bool = True) -> dict:
    """Train prefix + Linear for ``train.eerg_epochs`` at ``train.eerg_lr``; writes the output folder."""
    return run(s, s.cfg.train.eerg_lr, s.cfg.train.eerg_epochs, resume, show_progress, {"init": s.init},
               loss_fn=loss_of(s))


def validate(s: Session) -> dict:
    """valid_loss (emotion word + response) and valid_accuracy (argmax over the label words)."""
    return _validate(s)


def train_eerg(cfg: ELMDConfig, out: str | Path | None = None, resume: bool = False, encoder=None, show_progress: bool = True) -> dict:
    s = setup(cfg, out, encoder, show_progress)
    meta = fit(s, resume, show_progress)
    meta["out"] = str(s.out)
    return meta
