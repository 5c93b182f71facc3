"""The p-tuning v2 prefix of stage ``eerg`` (paper Sec. 3.5, Eq. 11; Liu et al. 2022).

A learned prefix of ``pre_seq_len`` = P key/value pairs per layer is put in front of the frozen
LLM's attention, as ChatGLM2-6B's own p-tuning v2 recipe does:

* one ``nn.Embedding`` row per prefix position holding, for every layer, the keys and values of
  the model's ``num_key_value_heads`` groups (2 for ChatGLM2-6B) x ``head_dim`` (128), i.e.
  ``num_layers * 2 * kv_heads * head_dim`` numbers (14336 for ChatGLM2-6B);
* optionally (``projection=True``) that embedding goes through a 2-layer MLP
  ``Linear(kv, hidden) -> tanh -> Linear(hidden, kv)`` (ChatGLM2's ``prefix_projection``);
* dropout (ChatGLM2: 0.1) on the result in training mode; the result is cast to the LLM's dtype
  (the encoder itself stays float32, as ChatGLM2's recipe keeps ``prefix_encoder.float()``).

The prefix enters ``GlmForCausalLM`` as the initial ``cache`` (a transformers
``DynamicCache``). As in ChatGLM2, the prefix keys get no rotary embedding (the cache holds keys
after rotation; prefix keys are stored as they are), the attention mask is extended by P ones on
the left, and the position ids count the real tokens only (ChatGLM2's ``get_position_ids`` ignores
the prefix); see :class:`elmd.models.elmd_model.ELMDModel`.

Why not peft's ``PrefixTuningConfig``: checked with peft 0.21.2 / transformers 5.23 on the tiny GLM,
it sizes the prefix correctly for the KV groups (``num_layers * 2 * kv_heads * head_dim`` per
virtual token) and its training forward works, but ``peft_model.generate(inputs_embeds=...)`` raises
"You passed `inputs_embeds` to `.generate()`, but the model class GlmForCausalLM doesn't have its
forwarding implemented", and ELMD must generate from embeddings (video tokens are spliced in).
Owning the small encoder keeps training and generation on one code path that the tests compare
(first-step generation logits == training-time forward logits), keeps the trainable tensors under
stable names in ``ELMDModel.trainable_state_dict()`` (``prefix.embedding.weight``,
``prefix.trans.{0,2}.{weight,bias}``), and avoids wrapping the frozen LLM.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache

from elmd.models.config import PrefixConfig


class PrefixEncoder(nn.Module):
    """Prefix positions 0..P-1 -> per-layer keys and values [B, kv_heads, P, head_dim].

    Initialised like ChatGLM2's (``nn.Embedding``'s N(0, 1); PyTorch's default Linear init).
    """

    def __init__(self, pre_seq_len: int, num_layers: int, num_kv_heads: int, head_dim: int,
                 projection: bool = False, projection_hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        if pre_seq_len < 1:
            raise ValueError(f"pre_seq_len must be >= 1, got {pre_seq_len}")
        if projection and projection_hidden < 1:
            raise ValueError(f"prefix projection needs a hidden size >= 1, got {projection_hidden}")
        self.pre_seq_len, self.num_layers = pre_seq_len, num_layers
        self.num_kv_heads, self.head_dim = num_kv_heads, head_dim
        self.projection = projection
        kv_size = num_layers * 2 * num_kv_heads * head_dim
        self.embedding = nn.Embedding(pre_seq_len, kv_size)
        self.trans = (nn.Sequential(nn.Linear(kv_size, projection_hidden), nn.Tanh(),
                                    nn.Linear(projection_hidden, kv_size)) if projection else None)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def for_llm(cls, llm_config, cfg: PrefixConfig) -> "PrefixEncoder":
        """Sized for a ``GlmConfig`` (layers, KV groups, head dim); ``cfg.hidden_size`` 0 = its hidden size."""
        head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // llm_config.num_attention_heads
        kv_heads = getattr(llm_config, "num_key_value_heads", None) or llm_config.num_attention_heads
        hidden = cfg.hidden_size or llm_config.hidden_size
        return cls(cfg.pre_seq_len, llm_config.num_hidden_layers, kv_heads, head_dim, cfg.projection, hidden, cfg.dropout)

    def forward(self, batch_size: int) -> torch.Tensor:
        """[num_layers, 2 (key, value), B, kv_heads, P, head_dim] in the encoder's dtype."""
        weight = self.embedding.weight  # [P, kv]
        table = self.trans(weight) if self.trans is not None else weight
        table = self.dropout(table.expand(batch_size, -1, -1))  # [B, P, kv] (dropout per row)
        P, L, H, D = self.pre_seq_len, self.num_layers, self.num_kv_heads, self.head_dim
        return table.view(batch_size, P, L, 2, H, D).permute(2, 3, 0, 4, 1, 5)

    def key_values(self, batch_size: int, dtype: torch.dtype | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(keys, values)``, each [B, kv_heads, P, head_dim], cast to ``dtype``."""
        kv = self(batch_size)
        if dtype is not None:
            kv = kv.to(dtype)
        return [(kv[i, 0], kv[i, 1]) for i in range(self.num_layers)]

    def cache(self, batch_size: int, llm_config, dtype: torch.dtype | None = None) -> DynamicCache:
        """A fresh ``DynamicCache`` already holding the prefix (the LLM's initial ``cache``).

        The cache is filled in place by the forward pass that uses it: build one per forward /
        per ``generate`` call. Gradients flow from the cached tensors back to the encoder.
        """
        if llm_config.num_hidden_layers != self.num_layers:
            raise ValueError(f"prefix has {self.num_layers} layers but the LLM has {llm_config.num_hidden_layers}")
        return DynamicCache(self.key_values(batch_size, dtype), config=llm_config)


def extend_attention_mask(attention_mask: torch.Tensor, pre_seq_len: int) -> torch.Tensor:
    """[B, T] -> [B, P + T] with P ones on the left (every token sees the whole prefix)."""
    ones = attention_mask.new_ones(attention_mask.shape[0], pre_seq_len)
    return torch.cat([ones, attention_mask], dim=1)


def real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, T] counting real tokens only (0 on left padding; the prefix is not counted)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
