"""Benchmark of `elmd convert chatglm2`: time and peak memory against the checkpoint size.

Writes a random checkpoint in the official ChatGLM2 layout (one shard per layer, fp16, ChatGLM2-6B's
layer width by default) and converts it in a child process, whose peak RSS shows that memory
follows the largest shard, not the model (never two full copies)::

    python bench/convert_chatglm2.py                       # 4 layers at hidden 4096 (~2.7 GB)
    python bench/convert_chatglm2.py --layers 2 --hidden 1024 --ffn 3424 --vocab 8192   # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import torch


def write_source(folder: Path, layers: int, hidden: int, ffn: int, vocab: int, heads: int = 32, groups: int = 2) -> int:
    d = hidden // heads
    cfg = dict(num_layers=layers, hidden_size=hidden, num_attention_heads=heads, multi_query_group_num=groups,
               kv_channels=d, ffn_hidden_size=ffn, padded_vocab_size=vocab, torch_dtype="float16")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    h = torch.float16
    shards = [{"transformer.embedding.word_embeddings.weight": torch.randn(vocab, hidden, dtype=h)}]
    for n in range(layers):
        p = f"transformer.encoder.layers.{n}."
        shards.append({
            p + "input_layernorm.weight": torch.ones(hidden, dtype=h),
            p + "self_attention.query_key_value.weight": torch.randn(hidden + 2 * groups * d, hidden, dtype=h),
            p + "self_attention.query_key_value.bias": torch.randn(hidden + 2 * groups * d, dtype=h),
            p + "self_attention.dense.weight": torch.randn(hidden, hidden, dtype=h),
            p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=h),
            p + "mlp.dense_h_to_4h.weight": torch.randn(2 * ffn, hidden, dtype=h),
            p + "mlp.dense_4h_to_h.weight": torch.randn(hidden, ffn, dtype=h),
        })
    shards.append({"transformer.encoder.final_layernorm.weight": torch.ones(hidden, dtype=h),
                   "transformer.output_layer.weight": torch.randn(vocab, hidden, dtype=h)})
    weight_map, largest = {}, 0
    for i, shard in enumerate(shards, start=1):
        name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, folder / name)
        weight_map.update({k: name for k in shard})
        largest = max(largest, (folder / name).stat().st_size)
        shards[i - 1] = None  # free
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return largest


def _convert(src: str, out: str, result) -> None:
    """In a fresh process: convert, then report its own peak RSS (VmHWM, bytes)."""
    from elmd.convert import convert_chatglm2

    convert_chatglm2(src, out)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    result.put(int(status["VmHWM"].split()[0]) * 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--ffn", type=int, default=13696)
    ap.add_argument("--vocab", type=int, default=65024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        largest = write_source(src, args.layers, args.hidden, args.ffn, args.vocab)
        total = sum(f.stat().st_size for f in src.glob("*.bin"))
        ctx = mp.get_context("spawn")
        result = ctx.Queue()
        start = time.perf_counter()
        proc = ctx.Process(target=_convert, args=(str(src), str(out), result))
        proc.start()
        peak = result.get()
        proc.join()
        took = time.perf_counter() - start
        if proc.exitcode != 0:
            raise SystemExit(f"conversion failed (exit {proc.exitcode})")
    gb = 1024**3
    print("| layers | hidden | checkpoint GB | largest shard GB | convert s | peak RSS GB |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.layers} | {args.hidden} | {total / gb:.2f} | {largest / gb:.2f} | {took:.1f} | {peak / gb:.2f} |")


if __name__ == "__main__":
    main()
