"""Speed of the avatar head's default backends (issue 15 item 6): seconds of audio + video produced
per second of wall time for a ~3-second reply (target: > 1, faster than real time).

For each emotion the same reply is rendered end to end (:func:`elmd.heads.avatar.render_avatar`:
eSpeak NG speech, cartoon frames at 25 fps, H.264 + AAC encode and mux, meta.json, atomic folder);
the stages are also timed apart (speech alone; frames drawn without encoding). Medians over
``--repeats``, all rows measured in one run.

    python bench/avatar.py [--repeats 3] [--size 256]

Prints a Markdown table (paste it into BENCHMARKS.md with the machine and date).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]

TEXT = "今天终于考完试了，出去走走吧。"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)

    from elmd.heads.avatar.config import AvatarConfig
    from elmd.heads.avatar.face import CartoonFace, avatar_identity, mouth_track
    from elmd.heads.avatar.meta import Profile
    from elmd.heads.avatar.render import EMOTIONS, render_avatar
    from elmd.heads.avatar.speech import EspeakBackend, read_wav
    from elmd.data.faces import draw_face

    cfg, speech, profile = AvatarConfig(size=args.size), EspeakBackend(), Profile()
    face = CartoonFace(cfg.fps, cfg.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        speech.synthesize(TEXT, "neutral", profile, tmp / "warm.wav")  # library load is not timed
        for emotion in EMOTIONS:
            t_speech, t_frames, t_all, dur = [], [], [], 0.0
            for r in range(args.repeats):
                t = time.perf_counter()
                said = speech.synthesize(TEXT, emotion, profile, tmp / f"{emotion}{r}.wav")
                t_speech.append(time.perf_counter() - t)
                x, sr = read_wav(said.wav)
                n = int(said.duration * cfg.fps) + 1
                opening, idt = mouth_track(x, sr, cfg.fps, n), avatar_identity("bench", profile)
                t = time.perf_counter()
                for k in range(n):
                    ex, motion = face.pose(k, emotion, idt, 0.085 * float(opening[k]), [])
                    draw_face(ex, idt, cfg.size, motion)
                t_frames.append(time.perf_counter() - t)
                t = time.perf_counter()
                out = render_avatar(TEXT, emotion, tmp / f"out_{emotion}{r}", cfg, profile, "bench", speech=speech, face=face)
                t_all.append(time.perf_counter() - t)
                dur = out.duration
            rows.append((emotion, dur, statistics.median(t_speech), statistics.median(t_frames), statistics.median(t_all)))
    print("| emotion | reply (s) | speech (s wall) | frames (s wall) | end to end (s wall) | media s / wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for emotion, dur, ts, tf, ta in rows:
        print(f"| {emotion} | {dur:.2f} | {ts:.3f} | {tf:.3f} | {ta:.3f} | {dur / ta:.1f}x |")
    total = sum(r[1] for r in rows) / sum(r[4] for r in rows)
    print(f"\nall emotions: {total:.1f} s of audio+video per wall second at {args.size}x{args.size}, 25 fps")


if __name__ == "__main__":
    main()
