"""Frozen image encoders that turn stickers into library vectors (issue 14, "Sticker library").

* :class:`VisualImageEncoder` (default) wraps the run's ViT + Q-Former
  (:class:`elmd.models.visual_encoder.VisualEncoder`: tiny, BLIP-2 or VisualGLM from a local
  folder); a sticker's vector is the mean of its ``Q`` query outputs, L2-normalised (``q``-d:
  64 tiny, 768 BLIP-2). PEGS embeds its library with the same frozen BLIP-2 vision tower.
* :class:`OpenClipImageEncoder` wraps an open_clip model loaded from a local checkpoint file
  (``open_clip`` is imported only here; without it the error says how to install it).

Both have ``label``, ``fingerprint`` (what meta.json stores; searching a library with another
encoder is refused), ``dim``, ``image_size`` and ``encode(images) -> float32 [N, dim]``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from elmd.errors import ConfigError


class ImageEncoder(Protocol):
    label: str
    dim: int
    image_size: int

    @property
    def fingerprint(self) -> str: ...

    def encode(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray: ...


def _normalise(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


class VisualImageEncoder:
    """A sticker -> mean over the Q-Former's query outputs of the frozen ViT + Q-Former."""

    def __init__(self, encoder, label: str | None = None):
        self.encoder = encoder
        self.label = label or f"visual:{encoder.source}"
        self.dim = encoder.q_dim
        self.image_size = encoder.image_size

    @property
    def fingerprint(self) -> str:
        return "visual-" + self.encoder.fingerprint()

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """uint8 ``[H, W, 3]`` images (any size) -> ``[N, q]`` unit vectors."""
        from elmd.models.video import to_model_input

        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(images), max(1, batch_size)):
            x = to_model_input(np.stack(images[i:i + batch_size]), self.image_size)  # [B, 3, S, S]
            feats = self.encoder.encode(x.unsqueeze(1), batch_size)  # [B, 1, Q, q]
            out.append(_normalise(feats[:, 0].mean(dim=1)))
        return np.concatenate(out)


class OpenClipImageEncoder:
    """open_clip ``encode_image`` of a local checkpoint, L2-normalised."""

    def __init__(self, arch: str, path: str | Path, device: str = "cpu"):
        try:
            import open_clip
        except ImportError:
            raise ConfigError("sticker.image_encoder=open_clip needs the open_clip package — "
                              "`pip install open_clip_torch`, or use image_encoder=visual") from None
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: open_clip checkpoint not found — set sticker.encoder_path to a local .pt/.bin/.safetensors file")
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path), device=device)
        self.model, self.preprocess, self.device = model.eval().requires_grad_(False), preprocess, device
        self.label = f"open_clip:{arch}:{path}"
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        st = path.stat()
        self._fingerprint = "open_clip-" + hashlib.sha256(json.dumps([arch, path.name, st.st_size, st.st_mtime_ns]).encode()).hexdigest()[:16]
        with torch.no_grad():
            self.dim = int(self.model.encode_image(torch.zeros(1, 3, self.image_size, self.image_size, device=device)).shape[-1])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        from PIL import Image

        out = []
        for i in range(0, len(images), max(1, batch_size)):
            x = torch.stack([self.preprocess(Image.fromarray(im)) for im in images[i:i + batch_size]]).to(self.device)
            out.append(_normalise(self.model.encode_image(x)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def build_image_encoder(sticker_cfg, vision_cfg) -> ImageEncoder:
    """The encoder ``sticker.image_encoder`` names: the run's ViT + Q-Former (``sticker.encoder_path`` or
    ``vision.path``; empty = the seeded tiny one) or open_clip from ``sticker.encoder_path``."""
    if sticker_cfg.image_encoder == "open_clip":
        if not sticker_cfg.encoder_path:
            raise ConfigError("sticker.image_encoder=open_clip needs sticker.encoder_path (a local open_clip checkpoint file)")
        return OpenClipImageEncoder(sticker_cfg.clip_arch, sticker_cfg.encoder_path)
    from dataclasses import replace

    from elmd.models.visual_encoder import build_visual_encoder

    vision = replace(vision_cfg, path=sticker_cfg.encoder_path or vision_cfg.path)
    return VisualImageEncoder(build_visual_encoder(vision))
