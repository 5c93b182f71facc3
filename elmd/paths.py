"""Portable paths of a saved config: which fields are paths, and how they are written relative to
the folder a config.yaml is saved in (``./`` / ``../``) and resolved back (see :mod:`elmd.runs`).
Imports nothing of the project, so :mod:`elmd.config` and :mod:`elmd.runs` can both use it."""

from __future__ import annotations

import os
from pathlib import Path

PATH_KEYS = ("data.train", "data.valid", "data.test", "index.path", "llm.path", "llm.tokenizer", "vision.path",
             "vision.feature_cache", "train.out", "train.rep_dir", "retrieval.encoder", "sticker.library",
             "sticker.modules", "sticker.sd_path", "sticker.init_from", "sticker.encoder_path")
"""Config fields holding file or folder paths ('' = unset; ``retrieval.encoder`` may be a name)."""

MAX_UP = 2
"""Paths at most this many levels above the folder are stored relative to it."""


def _get(cfg, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def _set(cfg, dotted: str, value) -> None:
    section, key = dotted.split(".")
    setattr(getattr(cfg, section), key, value)


def portable_path(value: str, folder: Path, base: Path | None = None) -> str:
    """``value`` (relative to ``base``, default the cwd) as stored in ``folder``'s config."""
    if not value or ":" in value and not Path(value).exists():  # unset, or a name such as builtin:char
        return value
    full = Path(os.path.abspath((base or Path.cwd()) / value))
    rel = os.path.relpath(full, os.path.abspath(folder))
    if rel.split(os.sep).count("..") > MAX_UP:
        return str(full)
    return rel if rel.startswith("..") else "./" + rel if rel != "." else "."


def resolve_path(value: str, folder: Path) -> str:
    """A stored path back to a usable one: ``./`` and ``../`` paths are relative to ``folder``."""
    if value == "." or value.startswith(("./", "../")):
        return os.path.normpath(os.path.abspath(Path(folder) / value))
    return value
