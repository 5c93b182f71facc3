"""Resumable training checkpoints (issue: "Checkpoints").

A checkpoint is a folder ``<out>/checkpoints/step-00000042/`` holding only what training changes:

- ``trainable.safetensors`` — the trainable tensors (video Linear, prefix), never the frozen LLM;
- ``state.pt`` — optimizer, scheduler, step/epoch counters and every RNG state (python, numpy,
  torch, CUDA), so a resumed run continues bit-for-bit where the last checkpoint left it;
- ``config.yaml`` and ``meta.json``.

The folder is written under a temporary name and renamed into place, then ``checkpoints/latest``
(a one-line text file) is replaced atomically: a run killed at any moment leaves the previous
checkpoint usable and loses at most the steps since it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from elmd.errors import ElmdError
from elmd.io import atomic_write_json, atomic_write_text
from elmd.runs import load_trainable  # noqa: F401  (re-exported: a checkpoint folder reads like an output)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: str | Path, step: int, trainable: dict[str, torch.Tensor], optimizer, scheduler=None, *,
                    epoch: int = 0, config_yaml: str = "", meta: dict | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; keep the newest ``keep``."""
    root = Path(out) / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    torch.save({
        "step": step,
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
    }, tmp / "state.pt")
    atomic_write_text(tmp / "config.yaml", config_yaml)
    atomic_write_json(tmp / "meta.json", {"step": step, "epoch": epoch, **(meta or {})})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", final.name + "\n")
    for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: str | Path) -> Path | None:
    """The folder ``latest`` points at, or None when the run has no checkpoint yet."""
    pointer = Path(out) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "state.pt").exists():
        raise ElmdError(f"{pointer}: points at {path.name}, which is incomplete — delete the pointer to start over")
    return path


def load_checkpoint(path: str | Path, module: torch.nn.Module, optimizer, scheduler=None) -> dict:
    """Restore trainable tensors into ``module`` (strict on their names), optimizer, scheduler and
    RNG states; returns ``{"step", "epoch", "meta"}``."""
    path = Path(path)
    tensors = load_trainable(path)
    own = dict(module.named_parameters())
    missing = [k for k in tensors if k not in own]
    if missing:
        raise ElmdError(f"{path}: checkpoint tensors {missing[:3]} do not exist in the model — was it written by another config?")
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value)
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").exists() else {}
    return {"step": state["step"], "epoch": state["epoch"], "meta": meta}
