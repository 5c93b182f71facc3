"""Training-step overhead and the feature cache's effect on epoch time (issue "two-stage training").

1. A full REP and EERG optimizer step of :func:`elmd.training.loop.train_step` (batch assembly from
   the encoded split + feature store, forward, target-token loss, backward, gradient all-reduce
   (a no-op in one process), clipping, AdamW, schedule) against the bare model's forward+backward
   on the same, already collated batch (``model(**batch, labels=labels).loss.backward()``).
   Target: overhead <= 15%.
2. One REP epoch with the feature cache (features read once into memory before the loop) against
   one without it (``vision.feature_cache=''``, ``train.features_in_memory=false``: every batch
   decodes its videos and runs the frozen ViT + Q-Former).

Run on the prepared sample (see scripts/quickstart.sh) with the tiny preset:

    python bench/train_step.py --set data.train=runs/sample/data/train.jsonl ... [--epoch-samples 64]

Prints a Markdown table (paste it into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]  # bench/retrieval.py would shadow the retrieval package


def interleaved(fns, repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function, timed alternately (a busy machine's drift hits all alike)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def step_vs_bare(stage: str, cfg, repeats: int) -> tuple[float, float]:
    from elmd.training import eerg, rep
    from elmd.training.loop import LoopSpec, TargetTokenLoss, make_optimizer, make_scheduler, train_step
    from elmd.training.session import train_mode

    cfg.train.init_from_rep = False
    s = (rep if stage == "rep" else eerg).setup(cfg, f"/tmp/elmd-bench-{stage}", show_progress=False)
    model, tc = s.model, cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    train_mode(model, tc.gradient_checkpointing)
    opt = make_optimizer(params, 1e-4, 0.0)
    sched = make_scheduler(opt, 10**6, 0, "constant")
    idx = list(range(min(tc.batch_size, len(s.train))))
    spec = LoopSpec(model, params, len(s.train), lambda i: s.batch(s.train, i), s.train.target_tokens,
                    lambda e: {}, 1e-4, 1)
    loss_fn = TargetTokenLoss()

    def full():
        train_step(spec, idx, opt, sched, loss_fn, tc, s.info)

    batch = s.batch(s.train, idx)

    def bare():
        model(**batch).loss.backward()
        for p in params:
            p.grad = None

    return tuple(interleaved([full, bare], repeats))


def epoch_time(cfg, cached: bool, samples: int) -> float:
    from elmd.training import rep
    from elmd.training.data import global_batches
    from elmd.training.loop import LoopSpec, TargetTokenLoss, make_optimizer, make_scheduler, train_step
    from elmd.training.session import train_mode

    if not cached:
        cfg.vision.feature_cache, cfg.train.features_in_memory = "", False
    cfg.data.max_samples = samples
    t0 = time.perf_counter()
    s = rep.setup(cfg, "/tmp/elmd-bench-epoch", show_progress=False)
    setup = time.perf_counter() - t0
    params = [p for p in s.model.parameters() if p.requires_grad]
    train_mode(s.model, False)
    opt = make_optimizer(params, 1e-4, 0.0)
    sched = make_scheduler(opt, 10**6, 0, "constant")
    spec = LoopSpec(s.model, params, len(s.train), lambda i: s.batch(s.train, i), s.train.target_tokens,
                    lambda e: {}, 1e-4, 1)
    t0 = time.perf_counter()
    for b in global_batches(len(s.train), cfg.train.batch_size, cfg.train.seed, 0):
        train_step(spec, b, opt, sched, TargetTokenLoss(), cfg.train, s.info)
    return setup, time.perf_counter() - t0


def main() -> None:
    from elmd.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--epoch-samples", type=int, default=64, help="samples of the timed epoch (0 = all)")
    args = ap.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows = []
    for stage in ("rep", "eerg"):
        full, bare = step_vs_bare(stage, load_config(args.config, args.overrides), args.repeats)
        rows.append((stage, full, bare))
    print(f"\nbatch {load_config(args.config, args.overrides).train.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}\n")
    print("| stage | full train step (s) | bare forward+backward (s) | overhead |")
    print("|---|---|---|---|")
    for stage, full, bare in rows:
        print(f"| {stage} | {full:.4f} | {bare:.4f} | {100 * (full / bare - 1):+.1f}% |")
    cached = epoch_time(load_config(args.config, args.overrides), True, args.epoch_samples)
    fresh = epoch_time(load_config(args.config, args.overrides), False, args.epoch_samples)
    print(f"\nREP epoch over {args.epoch_samples or 'all'} train samples\n")
    print("| features | setup (s) | epoch (s) |")
    print("|---|---|---|")
    print(f"| cache read once into memory | {cached[0]:.1f} | {cached[1]:.1f} |")
    print(f"| no cache: decode + ViT/Q-Former every batch | {fresh[0]:.1f} | {fresh[1]:.1f} |")


if __name__ == "__main__":
    main()
