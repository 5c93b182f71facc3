"""Does stage eerg keep the emotion stage rep learnt? (issue 12 item 4)

Trains stage eerg from one rep output with several settings and prints, per setting, the valid
emotion accuracy (argmax over the label words, as rep's validation), the predicted-label
distribution and the wall time, beside rep's own accuracy and the label prior:

    python bench/eerg_handover.py --run runs/sample                      # the default variants
    python bench/eerg_handover.py --run runs/sample --variant "w=2:train.eerg_emotion_weight=2" --seeds 0 1 2

``--run`` is a quickstart run folder (it reads ``RUN/rep/config.yaml`` as the base config, so the
same data, LM, index and features are used). Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]  # bench/retrieval.py would shadow the retrieval package

DEFAULT_VARIANTS = [
    "paper loss (w=0):train.eerg_emotion_weight=0",
    "w=1 (default):train.eerg_emotion_weight=1",
    "w=4:train.eerg_emotion_weight=4",
    "w=0, 4 epochs:train.eerg_emotion_weight=0,train.eerg_epochs=4",
    "w=0, lr 5e-3:train.eerg_emotion_weight=0,train.eerg_lr=5e-3",
]


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    return name, [o for o in overrides.split(",") if o]


def run_variant(run: Path, overrides: list[str], seed: int) -> dict:
    from elmd.config import load_config
    from elmd.training.run import train

    cfg = load_config(str(run / "rep" / "config.yaml"),
                      ["train.stage=eerg", f"train.rep_dir={run / 'rep'}", f"train.seed={seed}", *overrides])
    with tempfile.TemporaryDirectory(prefix="elmd-handover-") as tmp:
        t0 = time.perf_counter()
        meta = train(cfg, "eerg", out=Path(tmp) / "eerg", show_progress=False)
        seconds = time.perf_counter() - t0
    final = meta["final"]
    return {"acc": final["valid_accuracy"], "pred": final.get("valid_predicted", {}), "s": seconds,
            "prior": meta["label_prior_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="quickstart run folder holding rep/")
    ap.add_argument("--variant", action="append", help="NAME:key=value,key=value (repeatable)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    args = ap.parse_args()
    import json

    rep = json.loads((args.run / "rep" / "meta.json").read_text())
    print(f"rep valid accuracy {rep['final']['valid_accuracy']:.3f}, label prior {rep['label_prior_accuracy']:.3f}, "
          f"rep predicted {rep['final'].get('valid_predicted')}")
    print("| eerg setting | valid emotion acc | predicted labels (first seed) | s / run |")
    print("| --- | --- | --- | --- |")
    for text in args.variant or DEFAULT_VARIANTS:
        name, overrides = parse_variant(text)
        results = [run_variant(args.run, overrides, seed) for seed in args.seeds]
        accs = [r["acc"] for r in results]
        sd = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
        pred = ", ".join(f"{k} {v}" for k, v in results[0]["pred"].items() if v)
        print(f"| {name} | {statistics.mean(accs):.3f}{sd} | {pred} | {statistics.mean(r['s'] for r in results):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
