"""Stage ``rep`` (paper Sec. 3.4, Eq. 10): align the video tokens with the response emotion.

The LLM and the visual encoder are frozen; only the video Linear E_v = W [V_t; V_s] + b trains,
with the next-token loss on the response's emotion word as target (the prompt's instruction
asks for the emotion of the reply). Defaults (paper): batch 16, AdamW, lr 2e-5. After each epoch
the valid emotion accuracy is the argmax over the label words' likelihood.

Under ``vision.use_video=false`` (the 'w/o V' ablation) the prompts have no video positions, so
nothing receives a gradient: the run only measures what the frozen LLM predicts from the text,
which can do no better than the label prior.

    setup(cfg)  ->  fit(session)  ->  validate(session)        (or train_rep(cfg) for all three)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from elmd.training.session import Session, open_session, run
from elmd.training.session import validate as _validate

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

STAGE = "rep"


def setup(cfg: ELMDConfig, out: str | Path | None = None, encoder=None, show_progress: bool = True) -> Session:
    """Frozen LLM + a fresh video Linear (seeded), demonstrations, encoded splits, video features."""
    s = open_session(cfg, STAGE, out, encoder, show_progress)
    for name, p in s.model.named_parameters():
        assert p.requires_grad == name.startswith("projector."), name  # only the Linear trains
    return s


def fit(s: Session, resume: bool = False, show_progress: bool = True) -> dict:
    """Train the Linear for ``train.epochs`` at ``train.lr``; writes the output folder; returns meta."""
    return run(s, s.cfg.train.lr, s.cfg.train.epochs, resume, show_progress)


def validate(s: Session) -> dict:
    """valid_loss and valid_accuracy (argmax over the label words' likelihood)."""
    return _validate(s)


def train_rep(cfg: ELMDConfig, out: str | Path | None = None, resume: bool = False, encoder=None, show_progress: bool = True) -> dict:
    s = setup(cfg, out, encoder, show_progress)
    meta = fit(s, resume, show_progress)
    meta["out"] = str(s.out)
    return meta
