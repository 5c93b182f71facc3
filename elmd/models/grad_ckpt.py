"""Gradient checkpointing of the frozen GLM that keeps the p-tuning v2 prefix (paper Sec. 3.5, Eq. 11).

transformers' own checkpointing (``GradientCheckpointingLayer`` in transformers 5.24) sets
``cache=None`` inside every checkpointed decoder layer, because a layer that *writes* to a
``DynamicCache`` would append its keys a second time when backward replays it. Stage ``eerg``'s
prefix lives in exactly that cache (:mod:`elmd.models.prefix`), so under transformers'
checkpointing the prefix would silently stop reaching the attention.

:func:`enable_checkpointing` instead wraps each decoder layer in a non-reentrant
``torch.utils.checkpoint`` whose explicit inputs are the hidden states and that layer's prefix
keys / values (read from the cache before the layer runs). Inside the checkpoint the layer sees a
:class:`PrefixView` in place of the cache: its ``update`` returns ``prefix ⊕ new`` exactly as
``DynamicLayer.update`` does (``torch.cat`` on the sequence axis) but stores nothing, so the replay
in backward computes the same thing and gradients flow to the prefix encoder through the
checkpoint's inputs. The attention mask is still built by ``GlmModel`` from the real cache (its
length P), so masks and positions are unchanged. Without gradients (evaluation, ``generate``,
or no input that requires grad) the layers run as before, cache updates included.

Memory: per layer only its input [B, T, hidden] (+ the prefix, P x 2 x kv_heads x head_dim) is
kept for backward instead of every intermediate; backward recomputes one layer at a time (one
extra forward of the LLM, ~30% more step time). ``elmd plan`` reports both figures.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class PrefixView:
    """A read-only stand-in for one layer of the prefix cache inside a checkpointed layer."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Keys / values [B, kv_heads, P + T, head_dim] (as ``DynamicLayer.update``), nothing stored."""
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def _decoder_layers(llm: nn.Module) -> nn.ModuleList:
    model = getattr(llm, "model", llm)
    if not hasattr(model, "layers"):
        raise TypeError(f"{type(llm).__name__} has no decoder layers (expected GlmForCausalLM or GlmModel)")
    return model.layers


def _prefix_of(cache, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """This layer's (keys, values) in ``cache`` before the layer runs, or None (no / empty cache)."""
    if cache is None or len(getattr(cache, "layers", ())) <= layer_idx:
        return None
    layer = cache.layers[layer_idx]
    if not getattr(layer, "is_initialized", False) or layer.keys is None or layer.keys.numel() == 0:
        return None
    return layer.keys, layer.values


def _checkpointed_forward(layer: nn.Module, hidden_states: torch.Tensor, *args, **kwargs):
    """``layer.forward`` under a non-reentrant checkpoint, with the prefix passed explicitly."""
    plain = partial(type(layer).forward, layer)
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    prefix = _prefix_of(cache, layer.self_attn.layer_idx)
    if not torch.is_grad_enabled() or not (hidden_states.requires_grad or (prefix and prefix[0].requires_grad)):
        return plain(hidden_states, *args, **kwargs)  # no backward through this layer: nothing to save
    kwargs.pop("cache", None), kwargs.pop("past_key_values", None)
    kwargs["use_cache"] = False
    if prefix is None:
        return checkpoint(lambda h: plain(h, *args, cache=None, **kwargs), hidden_states, use_reentrant=False)

    def run(h, keys, values):
        return plain(h, *args, cache=PrefixView(keys, values), **kwargs)

    return checkpoint(run, hidden_states, *prefix, use_reentrant=False)


def enable_checkpointing(llm: nn.Module) -> nn.Module:
    """Checkpoint every decoder layer of ``llm`` (prefix kept); returns ``llm``. Works in train or
    eval mode (it acts whenever gradients are enabled), with or without a prefix cache. Do not
    combine with transformers' ``gradient_checkpointing_enable`` (it would drop the cache first)."""
    if getattr(getattr(llm, "model", llm), "gradient_checkpointing", False) or any(
            getattr(layer, "gradient_checkpointing", False) for layer in _decoder_layers(llm)):
        raise ValueError("transformers' gradient checkpointing is on — call gradient_checkpointing_disable() first")
    for layer in _decoder_layers(llm):
        layer.forward = partial(_checkpointed_forward, layer)
    return llm


def disable_checkpointing(llm: nn.Module) -> nn.Module:
    """Undo :func:`enable_checkpointing`."""
    for layer in _decoder_layers(llm):
        layer.__dict__.pop("forward", None)
    return llm


def checkpointing_enabled(llm: nn.Module) -> bool:
    return any("forward" in layer.__dict__ for layer in _decoder_layers(llm))
