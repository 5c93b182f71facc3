"""A stage's output folder is never lost by accident (issue "Real data, real users").

* A folder that already holds a training result (finished outputs, checkpoints or a metrics log)
  is refused with one line unless ``--resume`` (continue it) or ``--overwrite`` (replace it).
* ``--overwrite`` trains into a staging folder beside it (``.NAME.staging``) and swaps it in only
  when the new result is complete: an interrupted overwrite leaves the old result as it was.
* ``--resume`` continues only a run with the same result-deciding settings
  (:func:`result_settings`: learning rate, schedule, batch, seed, prefix, stage, the data's and the
  index's content, the model); a mismatch is refused naming the keys.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from elmd.errors import ElmdError

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

RESULT_FILES = ("meta.json", "trainable.safetensors", "checkpoints", "metrics.jsonl")
"""What makes a folder hold a (finished or started) training result."""

TRAIN_KEYS = ("batch_size", "grad_accum", "weight_decay", "scheduler", "warmup_steps", "max_grad_norm",
              "init_from_rep", "seed")
"""Fields of ``train`` that change the weights (plus the stage's lr / epochs fields)."""


def holds_result(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RESULT_FILES)


def staging_of(out: Path) -> Path:
    return out.parent / f".{out.name}.staging"


def claim(out: str | Path, resume: bool, overwrite: bool) -> Path:
    """The folder to train into: ``out`` itself, or its staging folder under ``overwrite``."""
    out = Path(out)
    if resume and overwrite:
        raise ElmdError("--resume and --overwrite contradict each other — resume continues the run in the folder, "
                        "overwrite replaces it")
    if out.exists() and not out.is_dir():
        raise ElmdError(f"{out}: is a file, not an output folder — choose another --out")
    if not holds_result(out) or resume:
        return out
    if not overwrite:
        raise ElmdError(f"{out}: already holds a training result — pass --resume to continue it, --overwrite to "
                        "replace it (the old one stays until the new one is complete), or choose another --out")
    staging = staging_of(out)
    if staging.exists() and os.environ.get("RANK", "0") == "0":
        shutil.rmtree(staging)  # an earlier, interrupted overwrite: never a result of its own
    return staging


def swap_in(staging: Path, out: Path) -> Path:
    """Replace ``out`` by the complete ``staging`` folder (the old one is removed only after)."""
    if staging == out:
        return out
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return out


def result_settings(cfg: ELMDConfig, stage: str) -> dict:
    """What decides a stage's weights, compared by ``--resume`` (see the module docstring)."""
    from dataclasses import asdict

    from elmd.stages import get_stage
    from elmd.training.data import fingerprints

    spec, tc = get_stage(stage), cfg.train
    out = {f"train.{k}": getattr(tc, k) for k in TRAIN_KEYS + (spec.lr_key, spec.epochs_key)}
    out["stage"] = stage
    if spec.generates_response:
        out |= {"train.eerg_emotion_weight": tc.eerg_emotion_weight, "train.target": tc.target}
    if spec.uses_prefix:
        out |= {f"prefix.{k}": v for k, v in asdict(cfg.prefix).items()}
    out |= {"llm.preset": cfg.llm.preset, "llm.path": cfg.llm.path, "llm.dtype": cfg.llm.dtype,
            "vision.use_video": cfg.vision.use_video, "vision.num_frames": cfg.vision.num_frames,
            "prompt.use_demonstration": cfg.prompt.use_demonstration,
            "prompt.max_source_length": cfg.prompt.max_source_length,
            "prompt.max_target_length": cfg.prompt.max_target_length}
    for name, info in fingerprints(cfg).items():  # content, not paths: a moved run still resumes
        out[f"{name}.content"] = info.get("sha256") or info.get("meta_sha256") or info.get("encoder_fingerprint")
    return out


def check_resume(saved: dict | None, now: dict, folder: Path) -> None:
    """Refuse to resume a checkpoint written with other result-deciding settings."""
    if saved is None:
        return  # a checkpoint of an earlier version: nothing recorded to compare
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in diff[:4])
        raise ElmdError(f"{folder}: its checkpoint was trained with other settings: {shown}"
                        f"{' …' if len(diff) > 4 else ''} — resume with the same settings, or pass --overwrite "
                        "to start afresh")
