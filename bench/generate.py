"""Throughput of `elmd generate` against the bare model's ``generate`` on the same prompts (issue 6).

* harness: :func:`elmd.evaluation.generate.generate_file` on the split — demonstration retrieval,
  prompt encoding, left-padded batching, feature-cache reads, decoding, emotion parsing, JSONL
  append + fsync per batch, meta.json — with the model already loaded (loading is not timed);
* bare: ``model.generate(**batch, **same decoding kwargs)`` over the same batches, collated and
  with their video features before the clock starts.

Both decode with the same seeds (so the same tokens); tokens/s = generated tokens (up to and
including eos) / seconds. Target: harness >= 0.9x bare, at batch 1 and 16. Medians of ``--repeats``
interleaved runs.

    python bench/generate.py                      # self-contained tiny run built in a temp folder
    python bench/generate.py --checkpoint runs/sample/eerg --data runs/sample/data/test.jsonl

Prints a Markdown table (paste it into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]  # bench/retrieval.py would shadow the retrieval package

REPLIES = {"happy": "太好了，真为你高兴！", "sad": "唉，真让人难过。"}
OPENERS = ["你听说了吗？", "我跟你说件事。", "你猜怎么着？", "有个消息。"]


def tiny_run(root: Path, n_test: int) -> tuple[Path, Path]:
    """Synthetic dialogues + two clips, a builtin index, a feature cache and a 1-epoch eerg output."""
    import imageio_ffmpeg
    import numpy as np

    from elmd.config import load_config
    from elmd.data.jsonl import read_samples
    from elmd.models.features import extract_features
    from elmd.training.run import train
    from retrieval.build import build_index
    from retrieval.encoder import load_retriever

    for name, blue in (("warm", 20), ("cold", 230)):
        w = imageio_ffmpeg.write_frames(str(root / f"{name}.mp4"), (32, 32), fps=4, macro_block_size=1)
        w.send(None)
        for k in range(8):
            w.send(np.full((32, 32, 3), (30 * k, 120, blue), dtype=np.uint8).tobytes())
        w.close()

    def dialogues(n, offset):
        return [{"dialogue_id": f"b{k}", "series": "s", "background": "两个朋友在聊天。",
                 "turns": [{"speaker": "甲", "text": OPENERS[k % 4], "emotion": "neutral",
                            "video": "warm.mp4" if k % 2 == 0 else "cold.mp4"},
                           {"speaker": "乙", "text": REPLIES["happy" if k % 2 == 0 else "sad"],
                            "emotion": "happy" if k % 2 == 0 else "sad"}]} for k in range(offset, offset + n)]

    for name, (n, off) in {"train": (16, 0), "valid": (4, 100), "test": (n_test, 200)}.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dialogues(n, off)),
                                            encoding="utf-8")
    overrides = [f"data.{s}={root / (s + '.jsonl')}" for s in ("train", "valid", "test")] + [
        f"index.path={root / 'index'}", "index.use_gpu=false", "retrieval.device=cpu", f"vision.feature_cache={root / 'features'}",
        "vision.num_frames=2", "vision.image_size=64", "vision.num_query_tokens=4", "train.batch_size=8",
        "train.eerg_epochs=1", "train.init_from_rep=false", "prefix.pre_seq_len=4", f"train.out={root / 'runs'}",
        "train.device=cpu"]
    cfg = load_config("tiny", overrides)
    texts = [s.utterance.text for s in read_samples(root / "train.jsonl")]
    enc = load_retriever("builtin:char", texts=texts, device="cpu", dim=32, vocab=200, seed=0).save(root / "encoder")
    build_index(cfg, str(root / "train.jsonl"), str(root / "index"), str(enc), progress=False)
    for split in ("train", "valid", "test"):
        extract_features(root / f"{split}.jsonl", root / "features", cfg.vision, show_progress=False)
    return Path(train(cfg, "eerg", show_progress=False)["out"]), root / "test.jsonl"


def bare_batches(gen, samples, demos, bs):
    """The harness's batches, collated with features, plus their sample ids (built before timing)."""
    out = []
    for i in range(0, len(samples), bs):
        part = samples[i:i + bs]
        enc = [gen.encode(s, d) for s, d in zip(part, demos[i:i + bs])]
        ids = [s.sample_id for s in part]
        out.append((gen.batch(enc, [s.video for s in part], ids), ids))
    return out


def run_bare(gen, batches) -> int:
    from elmd.evaluation.generate import batch_seed

    tokens, eos = 0, gen.tokenizer.eos_id
    kwargs = gen.decoding_kwargs()
    for batch, ids in batches:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(batch_seed(gen.cfg.generate.seed, ids))
            new = gen.model.generate(**batch, **kwargs)
        tokens += sum(r.index(eos) + 1 if eos in r else len(r) for r in new.tolist())
    return tokens


def measure(checkpoint: Path, data: Path, bs: int, repeats: int, overrides: list[str]) -> dict:
    from elmd.data.jsonl import read_samples
    from elmd.evaluation.generate import Generator, generate_file, run_config
    from elmd.training.data import labels_of, open_index, retrieve_demonstrations
    from elmd.training.session import load_trained

    cfg = run_config(checkpoint, overrides + [f"generate.batch_size={bs}"])
    model, tokenizer, _ = load_trained(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
    index = open_index(cfg) if cfg.prompt.use_demonstration else None
    samples = read_samples(data, labels_of(cfg), cfg.data.max_samples)
    gen = Generator(model, tokenizer, cfg)
    batches = bare_batches(gen, samples, retrieve_demonstrations(cfg, samples, labels_of(cfg), index), bs)
    harness_t, bare_t, tokens = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):  # the first round warms up
            t0 = time.perf_counter()
            meta = generate_file(cfg, checkpoint, data, Path(tmp) / f"p{r}.jsonl", progress=False,
                                 loaded=(model, tokenizer), index=index, log=lambda m: None)
            t1 = time.perf_counter()
            tokens["bare"] = run_bare(gen, batches)
            t2 = time.perf_counter()
            tokens["harness"] = meta["new_tokens"]
            if r:
                harness_t.append(t1 - t0)
                bare_t.append(t2 - t1)
    h, b = statistics.median(harness_t), statistics.median(bare_t)
    return {"bs": bs, "samples": len(samples), "tokens": tokens, "harness": tokens["harness"] / h, "bare": tokens["bare"] / b}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="stage output folder [default: build a tiny run]")
    ap.add_argument("--data", type=Path, help="split to generate for [default: the tiny run's test split]")
    ap.add_argument("--samples", type=int, default=32, help="test samples of the tiny run")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, data = (args.checkpoint, args.data) if args.checkpoint else tiny_run(Path(tmp), args.samples)
        if data is None:
            from elmd.evaluation.generate import run_config

            data = Path(run_config(ckpt).data.test)
        rows = [measure(ckpt, data, int(bs), args.repeats, args.overrides) for bs in args.batch_sizes.split(",")]
    print("| batch | samples | generated tokens (harness / bare) | `elmd generate` tokens/s | bare `generate` tokens/s | ratio (target ≥ 0.9) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['bs']} | {r['samples']} | {r['tokens']['harness']} / {r['tokens']['bare']} | {r['harness']:.1f} | "
              f"{r['bare']:.1f} | {r['harness'] / r['bare']:.2f}x |")


if __name__ == "__main__":
    main()
