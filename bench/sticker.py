"""Benchmark of the sticker library (issue 14, item 7). Prints a Markdown table.

    .venv/bin/python bench/sticker.py [--poses 3] [--size 128] [--n 10000] [--dim 256] [--threads 1]

- library build (read + decode images, encode, FAISS, table, atomic folder) vs pure image encoding of
  the same, already decoded stickers, with the tiny ViT + Q-Former at the tiny preset's 112 px;
- retrieval latency per reply (one query, emotion ``prefer``, 5 shown stickers excluded, top 5) at
  ``--n`` stickers (random unit vectors in the ``--dim`` retrieval space), against the same scores
  ranked without emotion or exclusion (numpy argpartition) and a FAISS Flat search, side by side.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elmd.data.labels import M3ED_LABELS  # noqa: E402
from elmd.heads.sticker.draw import draw_library  # noqa: E402
from elmd.heads.sticker.encoders import VisualImageEncoder  # noqa: E402
from elmd.heads.sticker.index import StickerLibrary, build_library  # noqa: E402
from elmd.heads.sticker.library import open_image, read_stickers, resolve_images  # noqa: E402
from elmd.models.visual_encoder import VisualEncoder  # noqa: E402


def timed(fn, repeat: int = 3):
    best, res = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def bench_build(poses: int, size: int, work: Path) -> list[tuple[str, str]]:
    lib_dir = work / "set"
    draw_library(lib_dir, size=size, poses=poses)
    meta = lib_dir / "stickers.jsonl"
    paths = resolve_images(read_stickers(meta), lib_dir, meta)
    enc = VisualImageEncoder(VisualEncoder.tiny(image_size=112))
    images = [open_image(p, enc.image_size) for p in paths]
    enc.encode(images[:8])  # warm-up
    t_enc, _ = timed(lambda: enc.encode(images, 32))
    t_dec, _ = timed(lambda: [open_image(p, enc.image_size) for p in paths])
    t_build, _ = timed(lambda: build_library(lib_dir, meta, work / "lib", enc, overwrite=True))
    n = len(paths)
    return [("stickers", f"{n} ({size} px PNG, encoded at {enc.image_size} px)"),
            ("pure encoding (decoded images)", f"{t_enc:.2f} s ({n / t_enc:.0f} stickers/s)"),
            ("PNG decode + resize only", f"{t_dec:.2f} s ({n / t_dec:.0f} stickers/s)"),
            ("library build end to end", f"{t_build:.2f} s ({n / t_build:.0f} stickers/s), +{100 * (t_build / t_enc - 1):.0f}% vs encoding")]


def bench_search(n: int, dim: int, queries: int = 300) -> list[tuple[str, str]]:
    import faiss

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    table = [{"id": f"s{i}", "image": f"/x/s{i}.png", "emotion": M3ED_LABELS[i % 7], "description": ""} for i in range(n)]
    lib = StickerLibrary(table, vecs, {})
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    shown = [[f"s{j}" for j in rng.integers(0, n, 5)] for _ in range(queries)]
    emotions = [M3ED_LABELS[i % 7] for i in range(queries)]

    def ours():
        for i in range(queries):
            lib.search(q[i:i + 1], emotions[i:i + 1], k=5, shown=shown[i:i + 1])

    def plain():
        for i in range(queries):
            s = vecs @ q[i]
            top = np.argpartition(s, n - 5)[n - 5:]
            top[np.argsort(-s[top])]

    index = faiss.IndexFlatIP(dim)
    index.add(vecs)

    def flat():
        for i in range(queries):
            index.search(q[i:i + 1], 5)

    rows = []
    for name, fn in (("StickerLibrary.search (emotion prefer, 5 shown excluded, k=5)", ours),
                     ("numpy matmul + argpartition top-5 (no emotion, no exclusion)", plain),
                     ("FAISS Flat search top-5 (no emotion, no exclusion)", flat)):
        t, _ = timed(fn)
        rows.append((name, f"{1e3 * t / queries:.3f} ms per reply"))
    return [("library", f"{n} stickers x {dim}-d")] + rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poses", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch / FAISS / BLAS threads (1 on a shared machine)")
    args = ap.parse_args()
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-sticker-"))
    try:
        rows = bench_build(args.poses, args.size, work) + bench_search(args.n, args.dim)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| measurement | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
