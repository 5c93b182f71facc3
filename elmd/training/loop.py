"""The training loop shared by stages rep and eerg (paper Sec. 3.4-3.5, Eq. 10-11; Sec. 4.3).

Only the small trainable part (video Linear, prefix) has gradients; the frozen LLM is never wrapped
in DDP. Instead the trainable tensors are broadcast from rank 0 at start and their gradients are
summed over ranks after backward (:func:`all_reduce_grads`). The loss is normalised exactly:

    loss = sum of the target-token cross-entropies of this micro-batch
           / number of target tokens in the whole GLOBAL batch (all ranks, all micro-batches)

(every rank knows that number without communication: the encoded targets are on every rank), so
the summed gradient equals the one of a single process on the whole global batch, and
``2 ranks x micro-batch b`` == ``1 process x batch 2b`` up to float rounding.

The loss is a hook: ``loss_fn(output, batch) -> {"loss": total, part: value, ...}`` gets the model's
:class:`~elmd.models.elmd_model.ELMDOutput` and the micro-batch (with ``global_target_tokens`` and
``global_samples`` of the whole global batch added, for exact normalisation) and returns this
micro-batch's share of the global mean loss; the parts are logged beside ``loss``. The default
:func:`target_token_loss` is the formula above; a head adds its terms without editing this file.

Per optimizer step: micro-batches (gradient accumulation) -> all-reduce -> clip -> AdamW ->
schedule. A step whose gradient is not finite is skipped (no NaN ever reaches the weights).
Checkpoints (:mod:`elmd.training.checkpoint`) hold the trainable tensors, optimizer, scheduler,
RNG states and the step; :func:`fit` with ``resume`` continues from the latest one and, since the
epoch order depends only on ``seed + epoch``, ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from elmd.errors import ConfigError, ElmdError
from elmd.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from elmd.training.data import global_batches, rank_micro_batches
from elmd.training.dist import DistInfo, all_reduce_sum, barrier
from elmd.training.metrics_log import MetricsLog
from elmd.models.prompt import IGNORE


class TargetTokenLoss(torch.nn.Module):
    """Sum of next-token cross-entropies over the target positions (labels != -100), in float32.

    ``forward(logits [B, T, V], labels [B, T]) -> scalar``; the caller divides by the global
    number of target tokens (see the module docstring).
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shifted = labels[:, 1:]
        keep = shifted != IGNORE
        picked = logits[:, :-1][keep].float()  # only the target positions go through the softmax
        return F.cross_entropy(picked, shifted[keep], reduction="sum")


def target_token_loss(output, batch: dict) -> dict[str, torch.Tensor]:
    """The stages' loss: target-token cross-entropy summed over the micro-batch / global target tokens."""
    return {"loss": _TARGET_LOSS(output.logits, batch["labels"]) / batch["global_target_tokens"]}


_TARGET_LOSS = TargetTokenLoss()

MODEL_INPUTS = ("input_ids", "attention_mask", "video_feats", "video_present", "video_mask")
"""Batch keys passed to the model; the others (labels, a head's targets) go to ``loss_fn`` only."""


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer, total_steps: int, warmup_steps: int = 0, kind: str = "linear"):
    """Linear warmup over ``warmup_steps``, then 'linear' decay to 0 at ``total_steps`` or 'constant'."""
    if kind not in ("linear", "constant"):
        raise ConfigError(f"train.scheduler '{kind}' — choose linear or constant")

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def broadcast_params(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Give every rank rank 0's trainable tensors (identity in a single process)."""
    if info.distributed:
        import torch.distributed as torch_dist

        with torch.no_grad():
            for p in params:
                torch_dist.broadcast(p.data, src=0)


def all_reduce_grads(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Sum the gradients over ranks in one flat all-reduce (a missing gradient counts as zero)."""
    if not info.distributed:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    all_reduce_sum(flat, info)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


@dataclass
class LoopSpec:
    """What :func:`fit` needs from a stage."""

    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    n_train: int
    batch_fn: Callable[[list[int]], dict]
    """Collated batch of training sample indices, on the device (with 'labels')."""
    target_tokens: Callable[[list[int]], int]
    """Target tokens of a list of training samples (the loss denominator)."""
    validate: Callable[[int], dict]
    """Metrics after epoch e (e.g. valid_loss, valid_accuracy), identical on every rank."""
    lr: float
    epochs: int
    config_yaml: str = ""
    meta: dict = field(default_factory=dict)
    on_epoch_end: Callable[[int, dict], None] | None = None
    loss_fn: Callable[[object, dict], dict] = target_token_loss
    """``(model output, micro-batch) -> {"loss": ..., parts}`` (see the module docstring)."""
    output_hidden_states: bool = False
    """Ask the model for its last-layer hidden states (a head's loss reads them)."""
    model_inputs: tuple[str, ...] = MODEL_INPUTS
    """Batch keys passed to the model."""


def fit(spec: LoopSpec, train_cfg, info: DistInfo, out: str | Path, resume: bool = False,
        show_progress: bool = True) -> list[dict]:
    """Train ``spec.params`` for ``spec.epochs``; returns the per-epoch metrics rows."""
    from tqdm import tqdm

    out, tc = Path(out), train_cfg
    opt = make_optimizer(spec.params, spec.lr, tc.weight_decay)
    per_epoch = math.ceil(spec.n_train / tc.batch_size)
    total = per_epoch * spec.epochs
    sched = make_scheduler(opt, total, tc.warmup_steps, tc.scheduler)
    step, history = _start(spec, opt, sched, tc, info, out, resume)
    broadcast_params(spec.params, info)
    log = MetricsLog(out, enabled=info.is_main, resume_step=step if resume else None)
    bar = tqdm(total=total, initial=step, desc=f"train {spec.meta.get('stage', '')}".strip(), unit="step",
               disable=not (info.is_main and show_progress), dynamic_ncols=True)
    skipped = 0
    try:
        for epoch in range(step // per_epoch, spec.epochs):
            batches = global_batches(spec.n_train, tc.batch_size, tc.seed, epoch)
            for b in range(step - epoch * per_epoch, per_epoch):
                t0 = time.perf_counter()
                loss, ok, parts = train_step(spec, batches[b], opt, sched, tc, info)
                skipped += not ok
                step += 1
                rate = len(batches[b]) / max(time.perf_counter() - t0, 1e-9)
                lr = sched.get_last_lr()[0]
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}", epoch=epoch + 1)
                if step % max(tc.log_every, 1) == 0 or step == total:
                    log.log(step, loss=loss, **parts, lr=lr, samples_per_s=rate, epoch=epoch + 1, skipped_steps=skipped)
                if tc.save_every and step % tc.save_every == 0 and step % per_epoch:
                    _save(spec, opt, sched, step, epoch, out, info, tc, history)
            row = {"epoch": epoch + 1, **spec.validate(epoch)}
            history.append(row)
            log.log(step, **row)
            if info.is_main:
                bar.write("epoch {}: ".format(epoch + 1) + "  ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "epoch"))
            if spec.on_epoch_end is not None:
                spec.on_epoch_end(epoch, row)
            _save(spec, opt, sched, step, epoch + 1, out, info, tc, history)
    finally:
        bar.close()
        log.close()
    return history


def _start(spec: LoopSpec, opt, sched, tc, info: DistInfo, out: Path, resume: bool) -> tuple[int, list[dict]]:
    """(step, epoch history) to start from: the latest checkpoint with ``resume`` (its settings must
    match ``spec.meta["settings"]``), else 0. Checkpoints are never deleted here: a fresh run in a
    folder that has some is refused (`elmd train` stages ``--overwrite`` runs in a new folder)."""
    from elmd.training.outputs import check_resume

    ck = latest_checkpoint(out)
    if resume and ck is not None:
        saved = json.loads((ck / "meta.json").read_text(encoding="utf-8")).get("settings")
        check_resume(saved, spec.meta.get("settings"), out)
        state = load_checkpoint(ck, spec.model, opt, sched)
        if info.rank > 0:  # rank 0's RNG state was saved; keep the ranks' dropout streams apart
            torch.manual_seed(tc.seed * 1000 + state["step"] * info.world_size + info.rank)
        return state["step"], list(state["meta"].get("history", []))
    if not resume and ck is not None:
        raise ElmdError(f"{out}: holds checkpoints of another run — pass --resume to continue it or --overwrite "
                        "to replace it")
    barrier(info)
    return 0, []


def _save(spec: LoopSpec, opt, sched, step: int, epoch: int, out: Path, info: DistInfo, tc, history) -> None:
    if info.is_main:
        state = {k: p for k, p in spec.model.named_parameters() if p.requires_grad}
        save_checkpoint(out, step, state, opt, sched, epoch=epoch, config_yaml=spec.config_yaml,
                        meta={**spec.meta, "history": history}, keep=tc.keep_checkpoints)
    barrier(info)


def train_step(spec: LoopSpec, batch: list[int], opt, sched, tc, info: DistInfo) -> tuple[float, bool, dict]:
    """One optimizer step on global batch ``batch``; returns (global mean loss, applied?, loss parts)."""
    n_tokens = max(spec.target_tokens(batch), 1)
    local, parts = torch.zeros(1, dtype=torch.float64, device=info.device), {}
    for mb in rank_micro_batches(batch, info.rank, info.world_size, tc.grad_accum):
        inputs = spec.batch_fn(mb)
        output = spec.model(**{k: v for k, v in inputs.items() if k in spec.model_inputs},
                            **({"output_hidden_states": True} if spec.output_hidden_states else {}))
        losses = spec.loss_fn(output, {**inputs, "global_target_tokens": n_tokens, "global_samples": len(batch)})
        loss = losses["loss"]
        if loss.requires_grad:
            loss.backward()
        local += loss.detach().double()
        for k, v in losses.items():
            if k != "loss":
                parts[k] = parts.get(k, 0.0) + float(v.detach())
    all_reduce_grads(spec.params, info)
    all_reduce_sum(local, info)
    if parts and info.distributed:
        summed = torch.tensor(list(parts.values()), dtype=torch.float64, device=info.device)
        all_reduce_sum(summed, info)
        parts = dict(zip(parts, summed.tolist()))
    grads = [p for p in spec.params if p.grad is not None]
    if tc.max_grad_norm > 0 and grads:
        norm = torch.nn.utils.clip_grad_norm_(grads, tc.max_grad_norm)
    else:
        norm = torch.stack([g.grad.detach().float().norm() for g in grads]).norm() if grads else torch.zeros(())
    ok = bool(torch.isfinite(norm)) and math.isfinite(local.item())
    if ok:
        opt.step()
        sched.step()
    opt.zero_grad(set_to_none=True)
    return local.item(), ok, parts
