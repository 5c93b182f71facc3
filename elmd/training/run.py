"""``elmd train``'s library entry point and the ablations of the paper's Table 3.

    train(cfg, "rep")                       # stage rep  -> train.out/rep
    train(cfg, "eerg", ablation="wo_v")     # stage eerg without video tokens
    train(cfg, "rep", overwrite=True)       # replace an earlier result (staged, swapped in at the end)

Ablations are config switches (:data:`ABLATIONS`), applied on top of the config:

* ``wo_erm``  — no demonstration in the prompt (no retrieval at all);
* ``wo_ert``, ``wo_ssc`` — the demonstrations come from the index built with a retriever trained
  without the emotion-contrastive loss / the self-separated component. Train that retriever with
  ``--set retrieval.ert=false`` (or ``retrieval.ssc=false``) and build its index at
  ``index.path`` + ``-wo_ert`` (``-wo_ssc``); the ablation points ``index.path`` there;
* ``wo_v``    — no video tokens;
* ``wo_rep``  — stage eerg starts from a fresh video Linear instead of the rep output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from elmd.errors import ConfigError

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

ABLATIONS = {
    "wo_erm": ["prompt.use_demonstration=false"],
    "wo_ert": ["retrieval.ert=false", "index.path={index}-wo_ert"],
    "wo_ssc": ["retrieval.ssc=false", "index.path={index}-wo_ssc"],
    "wo_v": ["vision.use_video=false"],
    "wo_rep": ["train.init_from_rep=false"],
}


def ablation_overrides(cfg: ELMDConfig, ablation: str | None) -> list[str]:
    """The ``key=value`` overrides of an ablation (``None`` / 'none' = the full model)."""
    if not ablation or ablation == "none":
        return []
    if ablation not in ABLATIONS:
        raise ConfigError(f"unknown ablation '{ablation}' — choose one of {', '.join(ABLATIONS)}")
    return [o.format(index=cfg.index.path) for o in ABLATIONS[ablation]]


def apply_ablation(cfg: ELMDConfig, ablation: str | None):
    """``cfg`` with the ablation's switches set (a new object; ``cfg`` is not changed)."""
    from elmd.config import with_overrides

    return with_overrides(cfg, ablation_overrides(cfg, ablation), f"ablation '{ablation}'")


def train(cfg: ELMDConfig, stage: str, out: str | Path | None = None, resume: bool = False, ablation: str | None = None,
          show_progress: bool = True, overwrite: bool = False) -> dict:
    """Run one stage of the registry (:mod:`elmd.stages`): setup -> fit -> validate each epoch ->
    output folder; returns its meta."""
    from elmd.training.dist import cleanup, init_distributed

    from elmd.stages import get_stage, trainer_of
    from elmd.training.dist import barrier
    from elmd.training.outputs import claim, swap_in
    from elmd.training.session import stage_out

    cfg = apply_ablation(cfg, ablation)
    run_stage = trainer_of(get_stage(stage))
    final = stage_out(cfg, stage, out)
    target = claim(final, resume, overwrite)  # refuses a folder holding a result unless resume / overwrite
    try:
        meta = run_stage(cfg, target, resume, show_progress=show_progress)
        info = init_distributed(cfg.train.device)
        barrier(info)
        if info.is_main:
            swap_in(target, final)
        barrier(info)
        meta["out"] = str(final)
    finally:
        cleanup(init_distributed(cfg.train.device))
    meta["ablation"] = ablation or "none"
    return meta
