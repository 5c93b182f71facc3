"""``elmd plan``: memory, tokens and time of one training step per GPU, before any GPU is rented (paper Sec. 4.3).

Per GPU (data parallel: every rank holds the whole frozen LLM, as :mod:`elmd.training.loop` runs it):

    weights      frozen LLM in llm.dtype + trainable projector / prefix in float32
    gradients    trainable parameters, float32
    optimizer    AdamW's exp_avg + exp_avg_sq of the trainable parameters, float32 (8 bytes each)
    step peak    measured on the meta device: peak of what forward + backward allocate
                 (activations saved for backward, logits and their gradient, temporaries, gradients)
    peak         weights + optimizer + step peak, plus the allocator's overhead (:class:`Hardware`)

The frozen visual encoder is not on the GPU in training: its features come from the cache
(``elmd features extract``), so it is reported with the FLOPs of encoding one video.

ZeRO-2 shards gradients and optimizer state over the ranks; here they belong to the few million
trainable parameters only (the frozen LLM has neither), so the plan reports the estimate of what
it would save instead of the project shipping a DeepSpeed setup that changes almost nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from elmd.plan.hardware import Hardware, fmt_bytes
from elmd.plan.lengths import Layout, Lengths, layout, lengths_from_data, lengths_from_limits
from elmd.plan.step import MicroBatch, count_flops, measure_memory

ADAM_BYTES = 8  # exp_avg + exp_avg_sq, float32


@dataclass
class Params:
    """Parameter counts of the full model."""

    llm: int
    vit: int
    qformer: int
    """Q-Former + its learned query tokens."""
    projector: int
    prefix: int
    """p-tuning v2 prefix (stage eerg)."""

    @property
    def total(self) -> int:
        return self.llm + self.vit + self.qformer + self.projector + self.prefix

    def trainable(self, stage: str) -> int:
        return self.projector + (self.prefix if stage == "eerg" else 0)


@dataclass
class Memory:
    """Bytes per GPU of one stage (micro-batch of :attr:`StagePlan.micro`)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    """Alive when backward starts, without checkpointing: saved for backward + the logits."""
    activations_ckpt: int
    """The same with checkpointing (each layer's input, what is outside the layers, the logits)."""
    step_peak: int
    """Peak of forward + backward without checkpointing (includes the gradients)."""
    step_peak_ckpt: int

    def peak(self, checkpointing: bool) -> int:
        return self.weights + self.optimizer + (self.step_peak_ckpt if checkpointing else self.step_peak)

    def scaled(self, factor: float, dtype_factor: float = 1.0, weight_factor: float = 1.0) -> "Memory":
        """The figures for ``factor`` x the rows (activations scale with rows, gradients do not)."""
        def act(x: int) -> int:
            return int((x - self.gradients) * factor * dtype_factor) + self.gradients
        return replace(self, weights=int(self.weights * weight_factor), activations=int(self.activations * factor * dtype_factor),
                       activations_ckpt=int(self.activations_ckpt * factor * dtype_factor),
                       step_peak=act(self.step_peak), step_peak_ckpt=act(self.step_peak_ckpt))


@dataclass
class StagePlan:
    """One stage's plan per GPU."""

    stage: str
    lengths: Lengths
    layout: Layout
    memory: Memory
    flops: int
    """FLOPs per GPU per optimizer step (mean micro-batch x micro-batches per step), no checkpointing."""
    flops_ckpt: int
    checkpointing: bool
    """train.gradient_checkpointing as configured (the verdict uses it)."""
    needed: int
    """Bytes the GPU needs as configured (peak + overhead)."""
    fits: bool
    knob: str = ""
    """What to change when it does not fit (empty when it fits)."""
    zero2_saving: int = 0
    """Bytes per GPU ZeRO-2 would save (gradients + optimizer state sharded over the GPUs)."""


@dataclass
class Plan:
    config: str
    dtype: str
    hardware: Hardware
    params: Params
    stages: list[StagePlan]
    extract_flops_per_video: int
    """Frozen ViT + Q-Former FLOPs for the m frames of one video (`elmd features extract`)."""
    seconds: float = 0.0
    """Wall time of making the plan."""

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.stages)

    @property
    def source(self) -> str:
        """Where the prompt lengths come from."""
        return self.stages[0].lengths.source if self.stages else ""


def _memory(meta, mb: MicroBatch, video_shape) -> Memory:
    plain = measure_memory(meta.model, mb, video_shape, checkpointing=False)
    ckpt = measure_memory(meta.model, mb, video_shape, checkpointing=True)
    return Memory(weights=meta.param_bytes(meta.model), gradients=plain.grad_bytes,
                  optimizer=meta.params(meta.model, trainable=True) * ADAM_BYTES,
                  activations=plain.forward_bytes, activations_ckpt=ckpt.forward_bytes,
                  step_peak=plain.peak_bytes, step_peak_ckpt=ckpt.peak_bytes)


def advise(mem: Memory, cfg, hw: Hardware, rows: int, checkpointing: bool) -> str:
    """The first knob that makes ``mem`` fit ``hw.gpu_mem`` ('' when it fits as it is)."""
    fit = lambda m, ck: hw.usable(m.peak(ck)) <= hw.gpu_mem  # noqa: E731
    if fit(mem, checkpointing):
        return ""
    if cfg.llm.dtype == "float32":
        half = mem.scaled(1.0, 0.5, weight_factor=0.5)
        if fit(half, checkpointing) or fit(half, True):
            return "bf16: set llm.dtype=bfloat16 (halves the frozen LLM's weights and activations)"
    if not checkpointing and fit(mem, True):
        return "checkpointing: set train.gradient_checkpointing=true"
    per_gpu = math.ceil(cfg.train.batch_size / hw.gpus)
    for ck in ([checkpointing] if checkpointing else [False, True]):
        for accum in range(cfg.train.grad_accum + 1, per_gpu + 1):
            micro = math.ceil(per_gpu / accum)
            if micro < rows and fit(mem.scaled(micro / rows), ck):
                extra = " and train.gradient_checkpointing=true" if ck and not checkpointing else ""
                return (f"micro-batch: set train.grad_accum={accum} (micro-batch {micro} per GPU){extra}, "
                        f"or lower train.batch_size / add GPUs")
    one = mem.scaled(1 / rows)
    return (f"ZeRO / model sharding: even 1 row per GPU with checkpointing needs {fmt_bytes(hw.usable(one.peak(True)))} "
            f"(frozen weights alone {fmt_bytes(mem.weights)}); ZeRO-2 would not help (it shards gradients and "
            f"optimizer state only) — shard the frozen LLM (ZeRO-3 / FSDP) or use larger GPUs")


def plan_stage(meta, cfg, stage: str, lengths: Lengths, hw: Hardware) -> StagePlan:
    lay = layout(lengths, cfg.train.batch_size, hw.gpus, cfg.train.grad_accum, cfg.train.seed)
    video_shape = (cfg.vision.num_frames, cfg.vision.num_query_tokens, meta.model.projector.q_dim)
    mem = _memory(meta, lay.worst, video_shape)
    flops = count_flops(meta.model, lay.mean, video_shape) * lay.micro_per_step
    flops_ckpt = count_flops(meta.model, lay.mean, video_shape, checkpointing=True) * lay.micro_per_step
    ck = cfg.train.gradient_checkpointing
    needed = hw.usable(mem.peak(ck))
    knob = advise(mem, cfg, hw, lay.worst.rows, ck)
    zero2 = int((mem.gradients + mem.optimizer) * (1 - 1 / hw.gpus))
    return StagePlan(stage, lengths, lay, mem, flops, flops_ckpt, ck, needed, not knob, knob, zero2)


def _extract_flops(visual, num_frames: int, image_size: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        visual(torch.zeros(num_frames, 3, image_size, image_size, device="meta"))
    return int(fc.get_total_flops())


def make_plan(cfg, hw: Hardware, stages=("rep", "eerg"), data=None, config_name: str = "",
              attention: str = "gpu", vocab_size: int | None = None, tokenizer=None) -> Plan:
    """Build the model on the meta device and plan ``stages`` (see the module docstring).
    ``data``: a split whose real prompt lengths are used (else the config's limits); ``attention``
    and ``vocab_size``/``tokenizer`` let the tests plan the tiny preset exactly as a CPU step runs it."""
    from elmd.plan.lengths import tokenizer_for
    from elmd.plan.meta_model import build_meta_model

    t0 = time.perf_counter()
    meta = build_meta_model(cfg, "eerg", vocab_size, attention)
    visual, prefix = meta.visual, meta.model.prefix
    note = "the given tokenizer"
    if tokenizer is None and data:
        tokenizer, note = tokenizer_for(cfg)
    params = Params(llm=meta.params(meta.model.llm), vit=meta.params(visual.vision_model),
                    qformer=meta.params(visual.qformer) + visual.query_tokens.numel(),
                    projector=meta.params(meta.model.projector), prefix=meta.params(prefix))
    plans = []
    for stage in stages:
        meta.model.prefix = prefix if stage == "eerg" else None
        lengths = (lengths_from_data(cfg, stage, data, tokenizer, note) if data
                   else lengths_from_limits(cfg, stage, tokenizer))
        plans.append(plan_stage(meta, cfg, stage, lengths, hw))
    meta.model.prefix = prefix
    extract = _extract_flops(visual, cfg.vision.num_frames, cfg.vision.image_size)
    return Plan(config_name or cfg.llm.preset, cfg.llm.dtype, hw, params, plans, extract, time.perf_counter() - t0)
