"""The full ELMD model on the meta device: shapes and dtypes only, no weights, no memory (paper Sec. 3.4-3.5).

* LLM: ``GlmForCausalLM`` at ChatGLM2-6B size (:data:`elmd.models.glm.CHATGLM2_6B`, or the
  ``config.json`` of ``llm.path`` when it exists) for ``llm.preset=chatglm2-6b``; the tiny GLM for
  ``tiny``. In ``llm.dtype`` and frozen, as :func:`elmd.models.presets.build_elmd_model` makes it.
* Visual encoder: BLIP-2's EVA ViT-g/14 (39 layers x 1408, 224 px) + Q-Former (12 layers x 768,
  cross-attention every 2nd layer) + 32 queries (:data:`BLIP2_VISION`, :data:`BLIP2_QFORMER`, or
  ``vision.path``'s ``config.json``); the tiny encoder for the tiny preset. Frozen, float32.
* Video projector ``Linear(q, hidden)`` and, for stage ``eerg``, the p-tuning v2 prefix: trainable, float32.

:func:`use_gpu_attention` makes the LLM's attention call PyTorch's memory-efficient SDPA kernel
(``aten._scaled_dot_product_efficient_attention``, what SDPA runs on an A100 when a padding mask is
given) instead of the math fallback that the meta device would pick, so that the saved tensors and
FLOPs are those of the GPU run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# BLIP-2 (Salesforce/blip2-opt-2.7b config.json): EVA ViT-g/14 without its last layer, and the Q-Former.
BLIP2_VISION = dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                    image_size=224, patch_size=14, qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu")
BLIP2_QFORMER = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     cross_attention_frequency=2, encoder_hidden_size=1408, vocab_size=30522,
                     max_position_embeddings=512)
GPU_ATTENTION = "elmd_plan_mem_efficient"


@dataclass
class MetaModel:
    """The meta-device parts of one stage's model."""

    model: nn.Module
    """ELMDModel: frozen LLM + projector (+ prefix in stage eerg)."""
    visual: nn.Module
    """Frozen ViT + Q-Former (VisualEncoder); not in the training step when features are cached."""
    dtype: torch.dtype
    """The LLM's dtype (llm.dtype)."""

    def params(self, module: nn.Module | None, trainable: bool | None = None) -> int:
        if module is None:
            return 0
        return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)

    def param_bytes(self, module: nn.Module | None, trainable: bool | None = None) -> int:
        if module is None:
            return 0
        return sum(p.numel() * p.element_size() for p in module.parameters()
                   if trainable is None or p.requires_grad == trainable)


def llm_config(cfg, vocab_size: int | None = None):
    """The GlmConfig of ``cfg.llm``: llm.path's config.json when present, else the preset's sizes."""
    from elmd.models.glm import chatglm2_6b_config, tiny_config

    path = Path(cfg.llm.path) if cfg.llm.path else None
    if cfg.llm.preset == "chatglm2-6b":
        if path is not None and (path / "config.json").is_file():
            from transformers import GlmConfig

            return GlmConfig.from_json_file(str(path / "config.json"))
        return chatglm2_6b_config()
    return tiny_config(vocab_size or 2005)


def visual_configs(cfg):
    """(Blip2VisionConfig, Blip2QFormerConfig, queries) of ``cfg.vision`` without loading weights."""
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

    from elmd.models.checkpoints import detect_format, read_blip2_config

    path = Path(cfg.vision.path) if cfg.vision.path else None
    if path is not None and path.is_dir() and detect_format(path) == "blip2":
        return read_blip2_config(path)
    if cfg.llm.preset == "chatglm2-6b" or (path is not None and path.is_dir()):
        size = dict(BLIP2_VISION, image_size=cfg.vision.image_size)
        return Blip2VisionConfig(**size), Blip2QFormerConfig(**BLIP2_QFORMER), cfg.vision.num_query_tokens
    from elmd.models.visual_encoder import VisualEncoder

    tiny = VisualEncoder.tiny(image_size=cfg.vision.image_size, num_query_tokens=cfg.vision.num_query_tokens)
    return tiny.vision_model.config, tiny.qformer.config, tiny.num_query_tokens


def build_meta_model(cfg, stage: str, vocab_size: int | None = None, attention: str = "gpu") -> MetaModel:
    """Stage ``stage``'s model on the meta device. ``attention``: 'gpu' (memory-efficient SDPA kernel,
    what an A100 runs), 'eager' (transformers' eager attention) or 'sdpa' (as the device picks)."""
    from elmd.models.elmd_model import ELMDModel
    from elmd.models.glm import resolve_dtype
    from elmd.models.pooling import VideoProjector
    from elmd.models.visual_encoder import VisualEncoder

    from transformers import GlmForCausalLM

    dtype = resolve_dtype(cfg.llm.dtype)
    glm_cfg = llm_config(cfg, vocab_size)
    glm_cfg._attn_implementation = _attention_name(attention)
    vision, qformer, queries = visual_configs(cfg)
    with torch.device("meta"):
        llm = GlmForCausalLM(glm_cfg).to(dtype)
        visual = VisualEncoder(vision, qformer, queries, source="meta")
        model = ELMDModel(llm, VideoProjector(qformer.hidden_size, glm_cfg.hidden_size))
    if stage == "eerg":
        model.attach_prefix(cfg.prefix, seed=0)
    return MetaModel(model, visual, dtype)


def _attention_name(attention: str) -> str:
    if attention == "gpu":
        register_gpu_attention()
        return GPU_ATTENTION
    if attention not in ("eager", "sdpa"):
        raise ValueError(f"attention '{attention}': use gpu, eager or sdpa")
    return attention


def mem_efficient_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **_):
    """transformers' SDPA attention as it runs on a CUDA GPU with a padding mask: GQA keys/values
    repeated to every head, the boolean mask turned into an additive bias, PyTorch's memory-efficient
    kernel (saves q, k, v, output, log-sum-exp and the bias for backward). Returns ([B, T, H, D], None)."""
    from transformers.integrations.sdpa_attention import repeat_kv

    n_rep = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    bias = None
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        bias = torch.zeros(mask.shape, dtype=query.dtype, device=query.device) if mask.dtype == torch.bool else mask
        bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[-2])
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, bias, grad, 0.0, False,
                                                                  scale=scaling)[0]
    return out.transpose(1, 2).contiguous(), None


def register_gpu_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(GPU_ATTENTION, mem_efficient_attention)
