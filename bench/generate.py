"""Throughput of `elmd generate` and ``Pipeline.respond_batch`` against the bare model (issues 6, 10).

* harness: :func:`elmd.evaluation.generate.generate_file` on the split — demonstration retrieval,
  prompt encoding, left-padded batching, feature-cache reads, decoding, emotion parsing, JSONL
  append (fsynced at most once a second), meta.json — with the pipeline already loaded;
* pipeline: :meth:`elmd.inference.Pipeline.respond_batch` over the same requests (no file);
* bare: the model's work alone — the emotion decision and the same decoder with the same per-request
  generators (``Pipeline.decode_batch``) on batches collated with their video features before the
  clock starts;
* HF: transformers' ``generate`` (``ELMDModel.generate``) on those batches, for reference.

harness, pipeline and bare decode with the same seeds (so the same tokens); tokens/s = generated
tokens (up to and including eos) / seconds. Target: harness and pipeline >= 0.95x bare, at batch
1 and 16. Medians of ``--repeats`` interleaved runs.

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


def bare_batches(pipe, samples, bs):
    """The harness's batches, collated with features, plus their requests (built before timing)."""
    from elmd.inference.pipeline import request_of, request_seed

    seed = pipe.cfg.generate.seed
    requests = [request_of(s, request_seed(seed, s.sample_id)) for s in samples]
    demos = pipe.demonstrations(requests)
    out = []
    for i in range(0, len(samples), bs):
        part = requests[i:i + bs]
        enc = [pipe.encode(r, d) for r, d in zip(part, demos[i:i + bs])]
        out.append((pipe.batch(enc, part), part))
    return out, requests, demos


def run_bare(pipe, batches) -> int:
    """The model alone: the emotion decision + the same decoder and seeds on ready batches
    (``Pipeline.decode_batch``; no retrieval, prompt encoding, feature reads, parsing or rows)."""
    from elmd.inference.decoding import generators_for

    tokens, settings = 0, pipe.settings()
    for batch, part in batches:
        gens = None if settings.greedy else generators_for([r.seed for r in part], pipe.device)
        tokens += sum(pipe.decode_batch(batch, settings, gens)[0].lengths)
    return tokens


def run_hf(pipe, batches) -> int:
    """transformers' ``generate`` on the same batches (for reference: another sampler, other tokens)."""
    g, tok, tokens = pipe.cfg.generate, pipe.tokenizer, 0
    kw = {"max_new_tokens": g.max_new_tokens, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
    kw |= {"do_sample": False} if g.greedy else {"do_sample": True, "top_p": g.top_p, "temperature": g.temperature, "top_k": 0}
    for batch, _ in batches:
        new = pipe.model.generate(**batch, **kw).tolist()
        tokens += sum(r.index(tok.eos_id) + 1 if tok.eos_id in r else len(r) for r in new)
    return tokens


def run_pipeline(pipe, requests, demos, bs) -> int:
    """``Pipeline.respond_batch`` over the split (what the server batches), no prediction file."""
    return sum(r.new_tokens for i in range(0, len(requests), bs)
               for r in pipe.respond_batch(requests[i:i + bs], demos[i:i + bs]))


def measure(checkpoint: Path, data: Path, bs: int, repeats: int, overrides: list[str]) -> dict:
    from elmd.data.jsonl import read_samples
    from elmd.evaluation.generate import generate_file
    from elmd.inference import load

    pipe = load(checkpoint, overrides=overrides + [f"generate.batch_size={bs}"])
    samples = read_samples(data, pipe.labels, pipe.cfg.data.max_samples)
    batches, requests, demos = bare_batches(pipe, samples, bs)
    times = {k: [] for k in ("harness", "pipeline", "bare", "hf")}
    tokens = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):  # the first round warms up; the four are interleaved
            for name, fn in (("harness", lambda: generate_file(checkpoint, data, Path(tmp) / f"p{r}.jsonl", progress=False,
                                                               pipeline=pipe, log=lambda m: None)["new_tokens"]),
                             ("pipeline", lambda: run_pipeline(pipe, requests, demos, bs)),
                             ("bare", lambda: run_bare(pipe, batches)), ("hf", lambda: run_hf(pipe, batches))):
                t0 = time.perf_counter()
                tokens[name] = fn()
                if r:
                    times[name].append(time.perf_counter() - t0)
    rate = {k: tokens[k] / statistics.median(v) for k, v in times.items()}
    return {"bs": bs, "samples": len(samples), "tokens": tokens, **rate}


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
            from elmd.runs import run_config

            data = Path(run_config(ckpt).data.test)
        rows = [measure(ckpt, data, int(bs), args.repeats, args.overrides) for bs in args.batch_sizes.split(",")]
    print("| batch | samples | tokens (harness / bare) | `elmd generate` tok/s | `respond_batch` tok/s | bare decode tok/s "
          "| HF `generate` tok/s | generate / bare (target ≥ 0.95) | respond_batch / bare |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['bs']} | {r['samples']} | {r['tokens']['harness']} / {r['tokens']['bare']} | {r['harness']:.1f} | "
              f"{r['pipeline']:.1f} | {r['bare']:.1f} | {r['hf']:.1f} | {r['harness'] / r['bare']:.2f}x | "
              f"{r['pipeline'] / r['bare']:.2f}x |")


if __name__ == "__main__":
    main()
