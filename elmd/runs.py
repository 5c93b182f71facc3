"""The run folder: what a finished stage output holds and how it is read back, from any directory.

A stage output folder (written by :mod:`elmd.training.session`)::

    trainable.safetensors   the trainable tensors only (video Linear; + prefix for eerg)
    config.yaml             the resolved config, its paths portable (below)
    meta.json               format, stage, modules, per-epoch metrics, fingerprints of the inputs
    tokenizer.model         the tokenizer used, so later commands use the same one

**Portable paths.** Every path field of the saved config (:data:`PATH_KEYS`) that lies within two
levels above the folder (its run root: ``runs/sample/eerg`` -> ``../index``, ``../data/test.jsonl``)
is written relative to the folder, starting with ``./`` or ``../``; other paths are written
absolute. :func:`run_config` resolves ``./`` and ``../`` paths against the folder, so the run
loads from any working directory, and a copied or moved run root keeps working. Folders written
before this format (paths relative to the directory they were trained in) still load from there.

``meta.json`` names the stage (:mod:`elmd.stages`) and the modules to rebuild
(``modules.projector.q_dim``, ``modules.prefix`` = the prefix settings), so loading needs no guessing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import json
from pathlib import Path

import torch

from elmd.errors import ElmdError
from elmd.paths import PATH_KEYS, _get, _set, portable_path, resolve_path  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

FORMAT = 2
"""``meta.json``'s ``format``: 2 = portable paths + ``modules`` (1 = earlier folders)."""

def portable_config(cfg: ELMDConfig, folder: str | Path):
    """A copy of ``cfg`` with its :data:`PATH_KEYS` written for ``folder`` (see the module docstring)."""
    out = copy.deepcopy(cfg)
    for key in PATH_KEYS:
        _set(out, key, portable_path(_get(out, key), Path(folder)))
    return out


def resolved_config(cfg: ELMDConfig, folder: str | Path):
    """``cfg`` read from ``folder``'s config.yaml with its folder-relative paths resolved (in place)."""
    for key in PATH_KEYS:
        _set(cfg, key, resolve_path(_get(cfg, key), Path(folder)))
    return cfg


def read_meta(folder: str | Path) -> dict:
    """``meta.json`` of a finished stage output; a one-line ElmdError when ``folder`` is none."""
    out = Path(folder)
    if not (out / "meta.json").is_file() or not (out / "trainable.safetensors").is_file():
        raise ElmdError(f"{out}: not a finished training output (no meta.json / trainable.safetensors) — "
                        "run `elmd train` first, or pass the stage's output folder")
    try:
        return json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except ValueError:
        raise ElmdError(f"{out / 'meta.json'}: is not valid JSON — the folder is damaged; train the stage again") from None


def stage_output_meta(folder: str | Path, stage: str, missing: str, key: str) -> dict:
    """The meta of ``stage``'s output in ``folder``; one-line ElmdErrors when there is none
    (``missing``: the rest of that message) or it is another stage's (``key``: the setting to fix)."""
    folder = Path(folder)
    if not (folder / "trainable.safetensors").is_file():
        raise ElmdError(f"{folder}: no {stage} output {missing}")
    meta = read_meta(folder)
    if meta.get("stage") != stage:
        article = "an" if stage[0] in "aeiou" else "a"
        raise ElmdError(f"{folder}: is a '{meta.get('stage')}' output, not {article} {stage} output — set {key} to one")
    return meta


def load_trainable(folder: str | Path) -> dict[str, torch.Tensor]:
    """The trainable tensors of an output folder (or of one of its checkpoints/step-* folders)."""
    from safetensors.torch import load_file

    file = Path(folder) / "trainable.safetensors"
    if not file.exists():
        raise ElmdError(f"{file}: not found — pass a run's output folder or one of its checkpoints/step-* folders")
    return load_file(str(file))


def run_config(folder: str | Path, overrides=()):
    """The folder's saved config, paths resolved against it, with ``key=value`` overrides on top;
    ``llm.tokenizer`` = the folder's tokenizer copy."""
    import yaml

    from elmd.config import config_from_dict, with_overrides

    folder = Path(folder)
    read_meta(folder)
    try:
        raw = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ElmdError(f"{folder / 'config.yaml'}: cannot be read ({str(e).splitlines()[0]}) — train the stage again") from None
    cfg = resolved_config(config_from_dict(raw), folder)
    cfg = with_overrides(cfg, list(overrides), f"{folder} override")
    if (folder / "tokenizer.model").is_file():
        cfg.llm.tokenizer = str((folder / "tokenizer.model").resolve())
    return cfg
