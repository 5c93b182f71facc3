"""Reading the visual encoder's tensors and configs from local checkpoint folders (Sec. 3.4).

Only the keys the caller asks for are materialised: safetensors files are opened lazily and
``.bin`` / ``.pt`` files are memory-mapped, so reading the ViT + Q-Former out of a multi-GB
BLIP-2 or VisualGLM-6B checkpoint does not load its language model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import torch

from elmd.errors import ElmdError

log = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_files(path: Path) -> list[Path]:
    """Weight files of a checkpoint folder (or the file itself); SAT keeps them one level down
    (e.g. ``visualglm-6b/1/mp_rank_00_model_states.pt``)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ElmdError(f"{path}: visual checkpoint not found — set vision.path to a local BLIP-2 or VisualGLM-6B folder")
    files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        files = sorted(p for p in path.glob("*/*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise ElmdError(f"{path}: no *.safetensors / *.bin / *.pt weight files — is this the checkpoint folder?")
    if any(p.suffix == ".safetensors" for p in files):  # prefer safetensors when both are present
        files = [p for p in files if p.suffix == ".safetensors"]
    return files


def _torch_load(file: Path) -> dict:
    """Memory-mapped when the file is in the zip format; SAT checkpoints pickle their args next to
    the weights, so a full (trusted, local) unpickle is the last resort."""
    obj, first_error = None, None
    for weights_only, mmap in ((True, True), (True, False), (False, True), (False, False)):
        if not weights_only and mmap:
            log.warning("%s: not loadable with weights_only=True, unpickling it fully (trusted local file)", file)
        try:
            obj = torch.load(file, map_location="cpu", mmap=mmap, weights_only=weights_only)
            break
        except Exception as e:  # noqa: PERF203 - try the next, more permissive way
            first_error = first_error or (str(e).splitlines()[0] if str(e) else type(e).__name__)
    else:
        raise ElmdError(f"{file}: cannot read the checkpoint ({first_error})")
    if isinstance(obj, dict) and "module" in obj and isinstance(obj["module"], dict):
        obj = obj["module"]  # SAT / DeepSpeed layout
    if not isinstance(obj, dict):
        raise ElmdError(f"{file}: expected a state dict, found {type(obj).__name__}")
    return obj


def read_tensors(path: str | Path, want: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    """All tensors whose key satisfies ``want``, from every weight file of ``path``."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for file in weight_files(Path(path)):
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as f:
                for k in f.keys():
                    if want(k):
                        out[k] = f.get_tensor(k)
        else:
            out.update({k: v for k, v in _torch_load(file).items() if isinstance(v, torch.Tensor) and want(k)})
    if not out:
        raise ElmdError(f"{path}: no visual-encoder weights found — check vision.path and vision.format")
    return out


def read_blip2_config(path: Path):
    """(Blip2VisionConfig, Blip2QFormerConfig, number of query tokens) from ``config.json``."""
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

    file = path / "config.json"
    if not file.exists():
        raise ElmdError(f"{path}: no config.json — a BLIP-2 folder saved by transformers is expected")
    raw = json.loads(file.read_text(encoding="utf-8"))
    if "vision_config" not in raw or "qformer_config" not in raw:
        raise ElmdError(f"{file}: not a BLIP-2 config (no vision_config / qformer_config)")
    vision = Blip2VisionConfig(**_known(Blip2VisionConfig, raw["vision_config"]))
    q = _known(Blip2QFormerConfig, raw["qformer_config"])
    q["encoder_hidden_size"] = vision.hidden_size
    return vision, Blip2QFormerConfig(**q), int(raw.get("num_query_tokens", 32))


def _known(cls, d: dict) -> dict:
    """The architecture fields of ``cls`` present in ``d`` (drops bookkeeping keys)."""
    fields = set(cls.__dict__.get("__annotations__", {})) - {"model_type", "base_config_key"}
    return {k: v for k, v in d.items() if k in fields}


def detect_format(path: Path) -> str:
    """'blip2' when ``path/config.json`` is a BLIP-2 config, else 'visualglm'."""
    cfg = path / "config.json"
    if cfg.exists():
        try:
            raw = json.loads(cfg.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raw = {}
        if raw.get("model_type") in ("blip-2", "blip_2") or "qformer_config" in raw:
            return "blip2"
    return "visualglm"


def checkpoint_fingerprint(path: str | Path, fmt: str, *extra) -> str:
    """Cheap identity of a local checkpoint: format, config files' bytes, and every weight file's
    relative name, size and mtime (a copied or rewritten file gives a new fingerprint, i.e. cache
    misses, never a stale hit)."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256(json.dumps([fmt, *map(str, extra)]).encode())
    root = path if path.is_dir() else path.parent
    for name in ("config.json", "model_config.json"):
        if (root / name).is_file():
            h.update((root / name).read_bytes())
    for f in weight_files(path):
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "ckpt-" + h.hexdigest()[:16]
