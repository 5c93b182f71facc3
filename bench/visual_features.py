"""Benchmark of the visual path: frame decoding, the visual encoder per video, and
`elmd features extract` on a handful of videos (first run encodes, second run only reads).

Writes synthetic videos (default 6 clips of 50 frames at 320x240) to a temporary folder::

    python bench/visual_features.py                    # tiny encoder (CPU seconds)
    python bench/visual_features.py --videos 20 --frames 8
    python bench/visual_features.py --encoder blip2-size   # random weights at BLIP-2 size (slow on CPU)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_videos(folder: Path, n: int, num_frames: int = 50, w: int = 320, h: int = 240) -> list[Path]:
    import imageio_ffmpeg

    rng, paths = np.random.default_rng(0), []
    for i in range(n):
        p = folder / f"clip{i}.mp4"
        writer = imageio_ffmpeg.write_frames(str(p), (w, h), fps=25, macro_block_size=1)
        writer.send(None)
        base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for k in range(num_frames):
            writer.send(np.roll(base, 4 * k, axis=1).tobytes())
        writer.close()
        paths.append(p)
    return paths


def build_encoder(kind: str):
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

    from elmd.models.visual_encoder import VisualEncoder

    if kind == "tiny":
        return VisualEncoder.tiny()
    # BLIP-2 (EVA ViT-g/14 + BERT-base Q-Former) sizes, random weights
    return VisualEncoder(Blip2VisionConfig(), Blip2QFormerConfig(encoder_hidden_size=1408), 32)


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--frames", type=int, default=8, help="frames m per video")
    ap.add_argument("--encoder", choices=["tiny", "blip2-size"], default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    from elmd.models.config import VisionConfig
    from elmd.models.features import extract_features
    from elmd.models.video import load_frames, to_model_input

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_videos(tmp, args.videos)
        for backend in ("decord", "opencv"):
            t = timed(lambda: load_frames(paths[0], args.frames, 224, backend))
            rows.append((f"decode 1 video ({backend}, m={args.frames}, 224px)", t))
        enc = build_encoder(args.encoder).to(args.device)
        x = to_model_input(load_frames(paths[0], args.frames, 224))[None].to(args.device)
        enc.encode(x)  # warm-up
        rows.append((f"encode 1 video ({args.encoder}, {args.device}, m={args.frames})", timed(lambda: enc.encode(x))))
        rows.append(("encoder fingerprint (first call)", timed(lambda: (setattr(enc, "_fingerprint", None), enc.fingerprint()), 1)))
        data = tmp / "d.jsonl"
        turns = [{"speaker": "AB"[i % 2], "text": f"第{i}句", "emotion": "neutral", "video": p.name} for i, p in enumerate(paths)]
        data.write_text(json.dumps({"dialogue_id": "d", "turns": turns}, ensure_ascii=False) + "\n", encoding="utf-8")
        cfg = VisionConfig(num_frames=args.frames)
        for run in ("first", "second"):
            t = time.perf_counter()
            stats = extract_features(data, tmp / "cache", cfg, encoder=enc, show_progress=False)
            rows.append((f"extract {args.videos} videos, {run} run (misses {stats.misses}, hits {stats.hits})",
                         time.perf_counter() - t))
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  seconds")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:8.3f}")


if __name__ == "__main__":
    main()
