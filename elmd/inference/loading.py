"""Rebuilding the model of a finished stage output folder (format: :mod:`elmd.runs`).

The folder's ``meta.json`` names the stage (:mod:`elmd.stages`) and the modules to rebuild: the
frozen LLM of the config's preset, the video Linear (``modules.projector.q_dim``) and, for a
stage that trains a prefix, the prefix with the saved settings (``modules.prefix``), and a head's
tokens after the vocabulary (``added_tokens``: names and ids; stage ``sticker``'s ``[IMG1..r]``). Folders of
the earlier format (no ``modules``) are read from their config and tensor shapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import torch

from elmd.errors import ElmdError
from elmd.runs import load_trainable, read_meta, run_config
from elmd.stages import get_stage

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; anything else is a one-line error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ElmdError(f"device '{name}' — use auto, cpu or cuda")
    return torch.device(name)


def load_model(folder: str | Path, device: str | torch.device = "cpu", cfg: ELMDConfig | None = None):
    """``(model, tokenizer, cfg)`` of a stage output: the ELMDModel in eval mode on ``device``.

    ``cfg``: the folder's config (:func:`elmd.runs.run_config`, overrides applied) when already read.
    """
    from dataclasses import fields

    from elmd.models.config import PrefixConfig
    from elmd.models.presets import build_elmd_model, load_tokenizer

    folder = Path(folder)
    meta = read_meta(folder)
    cfg = cfg if cfg is not None else run_config(folder)
    spec = get_stage(meta.get("stage", cfg.train.stage))
    tokenizer = load_tokenizer(cfg)
    state = load_trainable(folder)
    modules = meta.get("modules") or {}
    q_dim = (modules.get("projector") or {}).get("q_dim") or int(state["projector.proj.weight"].shape[1])
    model = build_elmd_model(cfg, tokenizer, int(q_dim))
    if spec.uses_prefix:
        saved = modules.get("prefix")
        prefix = PrefixConfig(**{f.name: saved[f.name] for f in fields(PrefixConfig)}) if saved else cfg.prefix
        model.attach_prefix(prefix, seed=cfg.train.seed)
    added = meta.get("added_tokens")  # a head's tokens after the vocabulary (stage sticker: [IMG1..r])
    if added:
        ids = model.attach_tokens(len(added["names"])).ids
        if ids != added["ids"]:
            raise ElmdError(f"{folder}: its added tokens had ids {added['ids'][:2]}... but this LLM gives {ids[:2]}... — "
                            "load it with the LLM it was trained on")
        tokenizer.add_tokens(added["names"], ids)
    model.load_trainable_state_dict(state)
    return model.to(resolve_device(device)).eval(), tokenizer, cfg
