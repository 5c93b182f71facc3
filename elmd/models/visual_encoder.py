"""Frozen BLIP-2 visual encoder: ViT + Q-Former with learned queries (paper Sec. 3.4, Eq. 5).

Each frame goes through the ViT (``Blip2VisionModel``); the Q-Former (``Blip2QFormerModel``)
cross-attends its ``Q`` learned query tokens (32 in BLIP-2) to the ViT patches, giving ``Q x q``
features per frame (q = Q-Former hidden size, 768 in BLIP-2). Both parts stay frozen in every
training stage, which is what makes the feature cache (:mod:`elmd.models.features`) possible.

Weights come from local folders only:

* :meth:`VisualEncoder.from_blip2` - a transformers BLIP-2 checkpoint (``config.json`` +
  ``*.safetensors`` / ``pytorch_model*.bin``) in the ``vision_model.* / qformer.* / query_tokens``
  key layout (the language model in the same files is skipped).
* :meth:`VisualEncoder.from_visualglm` - VisualGLM-6B's visual weights; see
  :mod:`elmd.models.visualglm_keys` for the key mapping.
* :meth:`VisualEncoder.tiny` - seeded, CPU-seconds model for tests and the tiny preset, with
  a spatially selective init (:mod:`elmd.models.tiny_visual`) so that it keeps facial detail.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from elmd.errors import ElmdError

if TYPE_CHECKING:  # transformers is imported lazily: a fully cached run never needs it
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

BLIP2_PREFIXES = ("vision_model.", "qformer.", "query_tokens")


class VisualEncoder(nn.Module):
    """Frozen ViT + Q-Former. State-dict keys follow BLIP-2: ``vision_model.*``, ``qformer.*``,
    ``query_tokens`` ([1, Q, q])."""

    def __init__(self, vision_config: Blip2VisionConfig, qformer_config: Blip2QFormerConfig,
                 num_query_tokens: int = 32, source: str = "random"):
        from transformers import Blip2QFormerModel, Blip2VisionModel

        super().__init__()
        if qformer_config.encoder_hidden_size != vision_config.hidden_size:
            raise ValueError("qformer_config.encoder_hidden_size must equal vision_config.hidden_size")
        self.vision_model = Blip2VisionModel(vision_config)
        self.qformer = Blip2QFormerModel(qformer_config)
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_tokens, qformer_config.hidden_size))
        self.source = source
        self._fingerprint: str | None = None
        self.requires_grad_(False)
        self.eval()

    # -- properties -----------------------------------------------------------------------
    @property
    def num_query_tokens(self) -> int:
        return self.query_tokens.shape[1]

    @property
    def q_dim(self) -> int:
        """q, the Q-Former hidden size (size of each query feature)."""
        return self.query_tokens.shape[2]

    @property
    def image_size(self) -> int:
        return int(self.vision_model.config.image_size)

    def train(self, mode: bool = True):
        """Always stays in eval mode (frozen: no dropout, no gradients)."""
        return super().train(False)

    # -- forward --------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised frames -> [B, Q, q] Q-Former query outputs."""
        param = self.query_tokens
        image_embeds = self.vision_model(pixel_values=pixel_values.to(param.device, self.vision_model.dtype)).last_hidden_state
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=image_embeds).last_hidden_state
        return out  # [B, Q, q]

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """[N, m, 3, H, W] normalised frames -> [N, m, Q, q] float32 on CPU, ``batch_size``
        frames per forward pass."""
        if frames.dim() != 5:
            raise ValueError(f"encode expects [N, m, 3, H, W] frames, got shape {tuple(frames.shape)}")
        n, m = frames.shape[:2]
        flat = frames.reshape(n * m, *frames.shape[2:])
        outs = [self(flat[i:i + batch_size]).float().cpu() for i in range(0, flat.shape[0], max(1, batch_size))]
        feats = torch.cat(outs) if outs else torch.zeros(0, self.num_query_tokens, self.q_dim)
        return feats.reshape(n, m, self.num_query_tokens, self.q_dim)

    # -- identity -------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Short hash identifying the computation. Loaded checkpoints: hash of the checkpoint
        files' names, sizes and mtimes and of their config (see ``checkpoint_fingerprint``, so it
        is known without loading). Otherwise: hash of the configs and the weights (every tensor's
        shape, float64 sum and a strided sample of its values). Computed once - frozen encoder."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.describe(), sort_keys=True).encode())
            for name, t in sorted(self.state_dict().items()):
                flat = t.detach().reshape(-1)
                step = max(1, flat.numel() // 1024)
                h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:{flat.double().sum().item():.10e}".encode())
                h.update(flat[::step].float().cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict:
        """The configs that define the computation (saved in meta.json)."""
        keep = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                "patch_size", "hidden_act", "layer_norm_eps", "qkv_bias", "cross_attention_frequency", "encoder_hidden_size")
        v, q = self.vision_model.config.to_dict(), self.qformer.config.to_dict()
        return {"vision": {k: v[k] for k in keep if k in v}, "qformer": {k: q[k] for k in keep if k in q},
                "num_query_tokens": self.num_query_tokens}

    # -- builders -------------------------------------------------------------------------
    @classmethod
    def tiny(cls, seed: int = 0, image_size: int = 224, num_query_tokens: int = 32) -> "VisualEncoder":
        """Small, seeded stand-in (ViT 2 x 64 with 16-px patches; Q-Former 2 x 64, q = 64) whose
        queries each look at one region of the frame, like a trained Q-Former's
        (:func:`elmd.models.tiny_visual.spatial_init_`); the rest is random."""
        from transformers import Blip2QFormerConfig, Blip2VisionConfig

        from elmd.models.tiny_visual import spatial_init_

        vision = Blip2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   image_size=image_size, patch_size=16, initializer_range=0.02)
        qformer = Blip2QFormerConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     encoder_hidden_size=64, cross_attention_frequency=2, max_position_embeddings=64,
                                     vocab_size=32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            enc = cls(vision, qformer, num_query_tokens, source=f"tiny:seed={seed}")
        spatial_init_(enc, torch.Generator().manual_seed(seed))
        return enc

    @classmethod
    def from_state_dict(cls, state: dict, vision_config, qformer_config, num_query_tokens: int, source: str) -> "VisualEncoder":
        """Build the encoder and load ``state`` (BLIP-2 key layout); every key must match."""
        with torch.device("meta"):
            enc = cls(vision_config, qformer_config, num_query_tokens, source=source)
        state = _fold_qv_bias(dict(state))
        own = enc.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ElmdError(f"{source}: visual weights do not match the BLIP-2 layout (missing {missing[:5]}"
                            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}) — check vision.path / vision.format")
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ElmdError(f"{source}: {k} has shape {tuple(v.shape)}, the config says {tuple(own[k].shape)}")
        enc.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
        enc.requires_grad_(False)
        return enc.eval()

    @classmethod
    def from_blip2(cls, path: str | Path) -> "VisualEncoder":
        """Load ViT + Q-Former + queries from a local transformers BLIP-2 folder."""
        from elmd.models.checkpoints import checkpoint_fingerprint, read_blip2_config, read_tensors

        path = Path(path)
        vision, qformer, nq = read_blip2_config(path)
        state = read_tensors(path, lambda k: k.startswith(BLIP2_PREFIXES))
        enc = cls.from_state_dict(state, vision, qformer, nq, source=f"blip2:{path}")
        enc._fingerprint = checkpoint_fingerprint(path, "blip2")
        return enc

    @classmethod
    def from_visualglm(cls, path: str | Path, vision_heads: int | None = None, qformer_heads: int | None = None) -> "VisualEncoder":
        """Load the visual part of a local VisualGLM-6B checkpoint (see :mod:`elmd.models.visualglm_keys`);
        head counts come from the folder's model_config.json / config.json, else 16 / 12."""
        from elmd.models.checkpoints import checkpoint_fingerprint, read_tensors
        from elmd.models.visualglm_keys import VISUAL_MARKERS, visualglm_to_blip2

        path = Path(path)
        raw = read_tensors(path, lambda k: any(mk in k for mk in VISUAL_MARKERS))
        state, vision, qformer, nq = visualglm_to_blip2(raw, str(path), vision_heads, qformer_heads)
        enc = cls.from_state_dict(state, vision, qformer, nq, source=f"visualglm:{path}")
        extra = [] if vision_heads is None and qformer_heads is None else [vision_heads, qformer_heads]
        enc._fingerprint = checkpoint_fingerprint(path, "visualglm", *extra)
        return enc


def _fold_qv_bias(state: dict) -> dict:
    """Older BLIP-2 exports keep ``self_attn.q_bias`` / ``v_bias``; fold them into ``qkv.bias``."""
    for key in [k for k in state if k.endswith("self_attn.q_bias")]:
        prefix = key[: -len("q_bias")]
        q, v = state.pop(key), state.pop(prefix + "v_bias")
        state[prefix + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return state


def build_visual_encoder(cfg) -> VisualEncoder:
    """The encoder a :class:`~elmd.models.config.VisionConfig` asks for (tiny when ``path`` is empty)."""
    from elmd.models.checkpoints import detect_format

    if not cfg.path:
        enc = VisualEncoder.tiny(image_size=cfg.image_size, num_query_tokens=cfg.num_query_tokens)
    else:
        fmt = detect_format(Path(cfg.path)) if cfg.format == "auto" else cfg.format
        if fmt == "blip2":
            enc = VisualEncoder.from_blip2(cfg.path)
        elif fmt == "visualglm":
            enc = VisualEncoder.from_visualglm(cfg.path)
        else:
            raise ElmdError(f"unknown vision.format '{cfg.format}' — use auto, blip2 or visualglm")
    if enc.num_query_tokens != cfg.num_query_tokens:
        raise ElmdError(f"{cfg.path or 'tiny encoder'}: has {enc.num_query_tokens} query tokens but "
                        f"vision.num_query_tokens={cfg.num_query_tokens} — set it to {enc.num_query_tokens}")
    if enc.image_size != cfg.image_size:
        raise ElmdError(f"{cfg.path or 'tiny encoder'}: expects {enc.image_size}-px frames but "
                        f"vision.image_size={cfg.image_size} — set it to {enc.image_size}")
    return enc


class LazyVisualEncoder:
    """Stands in for ``build_visual_encoder(cfg)`` and loads it only when a video must be encoded,
    so that a fully cached run never loads the ViT (checkpoint fingerprints need no weights)."""

    def __init__(self, cfg):
        self.cfg, self._encoder = cfg, None

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def load(self) -> VisualEncoder:
        if self._encoder is None:
            self._encoder = build_visual_encoder(self.cfg)
        return self._encoder

    def fingerprint(self) -> str:
        from elmd.models.checkpoints import checkpoint_fingerprint, detect_format

        if self._encoder is not None or not self.cfg.path:
            return self.load().fingerprint()  # tiny: cheap to build
        fmt = detect_format(Path(self.cfg.path)) if self.cfg.format == "auto" else self.cfg.format
        return checkpoint_fingerprint(self.cfg.path, fmt)

    @property
    def num_query_tokens(self) -> int:
        return self._encoder.num_query_tokens if self._encoder is not None else self.cfg.num_query_tokens

    @property
    def q_dim(self) -> int:
        return self.load().q_dim

    def encode(self, frames, batch_size: int = 32):
        return self.load().encode(frames, batch_size)
