"""The plan as a text table: one column per stage, the assumptions written under it."""

from __future__ import annotations

from elmd.plan.estimate import Plan
from elmd.plan.hardware import fmt_bytes


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.2f} s"


def _flops(n: float) -> str:
    return f"{n / 1e12:.1f} TFLOP" if n >= 1e11 else f"{n / 1e9:.2f} GFLOP"


def _rows(plan: Plan) -> list[tuple[str, list[str]]]:
    hw = plan.hardware
    rows: list[tuple[str, list[str]]] = []

    def add(name, fn):
        rows.append((name, [fn(s) for s in plan.stages]))

    add("trainable parameters", lambda s: f"{plan.params.trainable(s.stage):,}")
    add("micro-batch (rows x padded tokens)", lambda s: f"{s.layout.worst.rows} x {s.layout.worst.width}")
    add("micro-batches per GPU per step", lambda s: f"{s.layout.micro_per_step}")
    add("weights", lambda s: fmt_bytes(s.memory.weights))
    add("gradients (fp32)", lambda s: fmt_bytes(s.memory.gradients))
    add("optimizer state (AdamW, fp32)", lambda s: fmt_bytes(s.memory.optimizer))
    add("activations + logits, no checkpointing", lambda s: fmt_bytes(s.memory.activations))
    add("activations + logits, checkpointing", lambda s: fmt_bytes(s.memory.activations_ckpt))
    add("peak, no checkpointing", lambda s: fmt_bytes(hw.usable(s.memory.peak(False))))
    add("peak, checkpointing", lambda s: fmt_bytes(hw.usable(s.memory.peak(True))))
    add("GPU memory", lambda s: fmt_bytes(hw.gpu_mem))
    add("fits (as configured)", lambda s: ("yes" if s.fits else "NO") + (" (ckpt on)" if s.checkpointing else " (ckpt off)"))
    add("ZeRO-2 would save", lambda s: fmt_bytes(s.zero2_saving))
    add("tokens per step (real / padded)", lambda s: f"{s.layout.tokens_per_step:,.0f} / {s.layout.padded_tokens_per_step:,.0f}")
    add("FLOPs per GPU per step (ckpt)", lambda s: f"{_flops(s.flops)} ({_flops(s.flops_ckpt)})")
    add("step time (ckpt)", lambda s: f"{hw.seconds(s.flops):.2f} s ({hw.seconds(s.flops_ckpt):.2f} s)")
    if all(s.lengths.from_data for s in plan.stages):
        add("optimizer steps per epoch", lambda s: f"{s.layout.steps:,}")
        add("epoch time (ckpt)", lambda s: f"{_hours(hw.seconds(s.flops) * s.layout.steps)} "
                                           f"({_hours(hw.seconds(s.flops_ckpt) * s.layout.steps)})")
    return rows


def render(plan: Plan) -> str:
    """The table, the parameter counts, the assumptions and, when it does not fit, the knob."""
    hw, p = plan.hardware, plan.params
    head = [f"elmd plan: {plan.config} (llm.dtype {plan.dtype}) on {hw.gpus} GPU x {fmt_bytes(hw.gpu_mem)}",
            f"prompt lengths: {plan.source}",
            f"parameters: total {p.total:,} = LLM {p.llm:,} + ViT {p.vit:,} + Q-Former {p.qformer:,} "
            f"+ projector {p.projector:,} + prefix {p.prefix:,} (eerg)", ""]
    rows = _rows(plan)
    names = [s.stage for s in plan.stages]
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [f"{'per GPU':<{w0}}  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, ws))]
    lines.append("-" * len(lines[0]))
    lines += [f"{name:<{w0}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(vals, ws)) for name, vals in rows]
    notes = ["",
             f"assumptions: step time = FLOPs / ({hw.peak_tflops:g} TFLOP/s x MFU {hw.mfu:.2f}) (--gpu-tflops, --mfu; "
             "A100 dense bf16 peak = 312); peak = weights + optimizer + measured forward/backward peak, "
             f"x {1 + hw.fragmentation:.2f} for the allocator + {hw.overhead_gib:g} GiB CUDA context;",
             "memory at the longest sample in every row, time at the epoch's mean padded width; the frozen ViT + "
             "Q-Former is not on the GPU in training (cached features): "
             f"{fmt_bytes((p.vit + p.qformer) * 4)} fp32, {_flops(plan.extract_flops_per_video)} per video "
             "in `elmd features extract`.",
             f"planned in {plan.seconds:.1f} s on the meta device."]
    for s in plan.stages:
        if not s.fits:
            notes.append(f"does not fit: stage {s.stage} needs {fmt_bytes(s.needed)} > {fmt_bytes(hw.gpu_mem)} — {s.knob}")
    return "\n".join(head + lines + notes)
