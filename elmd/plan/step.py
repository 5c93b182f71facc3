"""One training micro-step of stage rep / eerg with static shapes, for the meta device (paper Sec. 3.4-3.5).

The step here is the computation of :meth:`elmd.models.elmd_model.ELMDModel.forward` followed by
:class:`elmd.training.loop.TargetTokenLoss` and ``backward``, written without data-dependent
operations (the meta device has no values): the video tokens are concatenated at their place
instead of ``masked_scatter`` (same output, nothing saved either way), the attention mask is the
4-D mask that ``create_causal_mask`` would build, and the target positions are picked with index
tensors of the known target count instead of a boolean mask (the same ``aten.index`` op). The
tests compare its figures on the tiny preset with a real step of the real code.

Measured per micro-batch (:func:`measure_memory`): bytes saved for backward (activations), bytes
live at the end of the forward, the peak of everything allocated during forward + backward
(activations, logits, their gradients, temporaries, the trainable gradients); and, in a separate
pass (:func:`count_flops`), FLOPs of forward + backward (recomputation included when checkpointing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from elmd.plan.accounting import LiveBytes, SavedBytes


@dataclass(frozen=True)
class MicroBatch:
    """Shape of one micro-batch: rows, padded width (prompt + target) and target tokens in all."""

    rows: int
    width: int
    targets: int
    video: bool = True
    """Every row has a video (its m + Q positions are part of ``width``)."""


@dataclass
class StepFigures:
    """What one micro-batch's forward + backward needs, in bytes."""

    saved_bytes: int
    """Activations: distinct storages autograd keeps for backward (weights excluded)."""
    forward_bytes: int
    """Everything created by the forward still alive when backward starts (activations + logits + loss)."""
    peak_bytes: int
    """Peak of everything created during forward + backward (includes the trainable gradients)."""
    grad_bytes: int
    """Still alive after backward: the trainable parameters' gradients."""


def _device_of(model) -> torch.device:
    return model.llm.get_input_embeddings().weight.device


def _attention_mask(kind: str, rows: int, width: int, prefix: int, dtype, device) -> torch.Tensor:
    """The 4-D mask create_causal_mask builds: bool for SDPA kernels, additive float for eager."""
    shape = (rows, 1, width, prefix + width)
    if kind == "eager":
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.ones(shape, dtype=torch.bool, device=device)


def _forward_loss(model, mb: MicroBatch, video_shape: tuple[int, int, int]):
    """(logits, loss) of a micro-batch of shape ``mb`` (values are zeros; only shapes matter)."""
    llm, dev = model.llm, _device_of(model)
    B, T = mb.rows, mb.width
    embeds = llm.get_input_embeddings()(torch.zeros(B, T, dtype=torch.long, device=dev))  # [B, T, D]
    if mb.video:
        m, Q, q = video_shape
        video = model.projector(torch.zeros(B, m, Q, q, device=dev)).to(embeds.dtype)  # [B, m + Q, D]
        start = T // 2 - video.shape[1] // 2
        embeds = torch.cat([embeds[:, :start], video, embeds[:, start + video.shape[1]:]], dim=1)
    P = model.prefix.pre_seq_len if model.prefix is not None else 0
    cache = model.prefix.cache(B, llm.config, embeds.dtype) if P else None
    mask = _attention_mask(llm.config._attn_implementation, B, T, P, embeds.dtype, dev)
    positions = torch.zeros(B, T, dtype=torch.long, device=dev)
    logits = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache, use_cache=False).logits
    rows = torch.zeros(mb.targets, dtype=torch.long, device=dev)
    cols = torch.zeros(mb.targets, dtype=torch.long, device=dev)
    picked = logits[:, :-1][rows, cols].float()  # as TargetTokenLoss: only target positions, in float32
    loss = F.cross_entropy(picked, torch.zeros(mb.targets, dtype=torch.long, device=dev), reduction="sum")
    return logits, loss / max(mb.targets, 1)


class _Checkpointing:
    """Context: the LLM's decoder layers checkpointed (elmd.models.grad_ckpt) when ``on``."""

    def __init__(self, llm, on: bool):
        self.llm, self.on = llm, on

    def __enter__(self):
        from elmd.models.grad_ckpt import enable_checkpointing

        if self.on:
            enable_checkpointing(self.llm)

    def __exit__(self, *exc):
        from elmd.models.grad_ckpt import disable_checkpointing

        if self.on:
            disable_checkpointing(self.llm)


def _prepare(model) -> list[torch.nn.Parameter]:
    model.train()
    model.llm.eval()  # as the training loop: frozen LLM in eval mode (its dropout is 0 anyway)
    for p in model.parameters():
        p.grad = None
    return [p for p in model.parameters() if p.requires_grad]


def measure_memory(model, mb: MicroBatch, video_shape: tuple[int, int, int], checkpointing: bool = False) -> StepFigures:
    """Bytes of forward + backward of ``model`` (ELMDModel, usually on meta) on a micro-batch ``mb``."""
    trainable = _prepare(model)
    params = list(model.parameters())
    with _Checkpointing(model.llm, checkpointing), LiveBytes([*params, *model.buffers()]) as live:
        with SavedBytes(params) as saved:
            logits, loss = _forward_loss(model, mb, video_shape)
        saved_total = saved.total
        saved.release()
        live.mark("forward")
        if loss.requires_grad:  # stage rep on rows without video trains nothing (as the loop, no backward)
            loss.backward()
        del logits, loss
    grads = sum(p.grad.numel() * p.grad.element_size() for p in trainable if p.grad is not None)
    _prepare(model)
    return StepFigures(saved_total, live.marks["forward"], live.peak, grads)


def count_flops(model, mb: MicroBatch, video_shape: tuple[int, int, int], checkpointing: bool = False) -> int:
    """Forward + backward FLOPs (recomputation included). Run apart from :func:`measure_memory`:
    the FLOP counter's module tracker keeps tensors alive and would inflate the memory figures."""
    _prepare(model)
    with _Checkpointing(model.llm, checkpointing), FlopCounterMode(display=False) as flops:
        _, loss = _forward_loss(model, mb, video_shape)
        if loss.requires_grad:
            loss.backward()
    _prepare(model)
    return int(flops.get_total_flops())
