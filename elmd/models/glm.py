"""The LLM backbone: ChatGLM2-6B as transformers' native ``GlmForCausalLM`` (paper Sec. 3.4, 4.3).

ChatGLM2-6B (Du et al. 2022; THUDM 2023) is a pre-norm decoder: RMSNorm (eps 1e-5), multi-query
attention with 2 key/value groups, bias on the fused QKV projection only, rotary position
embedding on the first half of every head dimension applied to interleaved pairs
(x[0::2], x[1::2]) with base 10000, a SwiGLU MLP whose fused input projection holds the gate
first, and an output layer not tied to the input embedding.

transformers' ``glm`` architecture implements exactly this math (``partial_rotary_factor`` 0.5,
interleaved ``rotate_half``, ``gate_up_proj`` chunked gate-first), so no remote code is needed;
the ``glm4`` type is *not* used (it adds post-attention / post-MLP norms). The official
checkpoint layout is turned into this one by :mod:`elmd.convert`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GlmConfig, GlmForCausalLM

# ChatGLM2-6B sizes (THUDM/chatglm2-6b config.json).
CHATGLM2_6B = dict(
    num_hidden_layers=28,
    hidden_size=4096,
    num_attention_heads=32,
    num_key_value_heads=2,
    head_dim=128,
    intermediate_size=13696,
    vocab_size=65024,
    max_position_embeddings=32768,
    rms_norm_eps=1e-5,
)

# Tiny sizes: same architecture flags, random init, seconds on a CPU.
TINY = dict(
    num_hidden_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def glm_config(vocab_size: int, pad_token_id: int = 0, eos_token_id: int = 2, **sizes) -> GlmConfig:
    """A ``GlmConfig`` with ChatGLM2's architecture flags and the given sizes."""
    sizes = {**CHATGLM2_6B, **sizes, "vocab_size": vocab_size}
    return GlmConfig(
        **sizes,
        hidden_act="silu",
        attention_bias=True,  # bias on q/k/v only; o_proj and the MLP have none (as in ChatGLM2)
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        attention_dropout=0.0,
    )


def chatglm2_6b_config() -> GlmConfig:
    return glm_config(CHATGLM2_6B["vocab_size"])


def tiny_config(vocab_size: int, pad_token_id: int = 0, eos_token_id: int = 2) -> GlmConfig:
    return glm_config(vocab_size, pad_token_id, eos_token_id, **TINY)


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        from elmd.errors import ConfigError

        raise ConfigError(f"llm.dtype '{name}' is not one of {sorted(DTYPES)}")
    return DTYPES[name]


def random_glm(config: GlmConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> GlmForCausalLM:
    """A randomly initialised model, identical for the same config and seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GlmForCausalLM(config)
    return model.to(dtype).eval()


def load_glm(path: str | Path, dtype: torch.dtype = torch.float32) -> GlmForCausalLM:
    """Load converted weights from a local folder (never the hub)."""
    return GlmForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True).eval()


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Turn off gradients of every parameter (the LLM stays frozen in ELMD)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model
