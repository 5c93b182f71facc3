"""Generating the bundled sample's face videos on demand (`elmd data make-videos`).

Every turn i of a dialogue with a ``video`` path gets a clip of the **listener** — the speaker of
turn i+1 — while turn i is spoken; the listener's expression is the emotion of turn i+1 (their
response), drawn by :mod:`elmd.data.faces`. The last turn's clip shows the other speaker with a
neutral face. A person's look is a deterministic function of (dialogue_id, speaker). This is the
signal the video path of ELMD (paper Sec. 3.2) can learn from: the text of the sample's pivotal
utterance leaves the response emotion open, the face does not (``data/sample/README.md``).

Videos are a cache, never committed: each is H.264 mp4 (yuv420p) written through a temporary file
and renamed, and a manifest (``manifest.json`` in the videos' folder) stores a hash of each clip's
spec (emotion, identity, size, fps, seconds, generator version) and of the file's bytes, so a rerun
only writes clips that are missing, changed or corrupt.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from elmd.data.faces import EXPRESSIONS, GENERATOR_VERSION, face_clip, identity_for
from elmd.data.jsonl import read_dialogues
from elmd.data.labels import LabelSet
from elmd.data.schema import Dialogue
from elmd.errors import DataError, ElmdError
from elmd.io import atomic_write_json, file_sha256

MANIFEST_NAME = "manifest.json"
CRF = 16
"""x264 constant rate factor: low enough that codec loss stays well below expression differences."""
_SAVE_EVERY = 25


@dataclass(frozen=True)
class ClipSpec:
    """What one clip shows; its :meth:`key` decides whether a cached file is still valid."""

    emotion: str
    identity: str
    """Key of the listener's identity, ``"<dialogue_id>/<speaker>"``."""
    seed: str
    """Key of the clip's motion (sway, jitter, blink), ``"<dialogue_id>/<turn index>"``."""
    size: int
    fps: float
    seconds: float
    version: int = GENERATOR_VERSION

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def clip_specs(dialogue: Dialogue, size: int, fps: float, seconds: float) -> list[tuple[int, ClipSpec]]:
    """(turn index, spec) for every turn of ``dialogue`` that names a video."""
    out = []
    turns = dialogue.turns
    size, fps, seconds = int(size), float(fps), float(seconds)
    for i, turn in enumerate(turns):
        if not turn.video:
            continue
        if i + 1 < len(turns):
            listener, emotion = turns[i + 1].speaker, turns[i + 1].emotion or "neutral"
        else:
            others = [t.speaker for t in reversed(turns) if t.speaker != turn.speaker]
            listener, emotion = (others[0] if others else f"{turn.speaker}~listener"), "neutral"
        out.append((i, ClipSpec(emotion, f"{dialogue.dialogue_id}/{listener}", f"{dialogue.dialogue_id}/{i}", size, fps, seconds)))
    return out


def render_clip(spec: ClipSpec) -> np.ndarray:
    """The frames (T x H x W x 3, uint8) a spec describes."""
    return face_clip(spec.emotion, identity_for(spec.identity), size=spec.size, seconds=spec.seconds, fps=spec.fps, seed=spec.seed)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write ``frames`` as H.264/yuv420p mp4 via a temporary file renamed into place (deterministic bytes)."""
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.mp4")
    h, w = frames.shape[1:3]
    params = ["-crf", str(CRF), "-preset", "veryfast", "-bf", "0", "-threads", "1", "-fflags", "+bitexact", "-map_metadata", "-1"]
    writer = None
    try:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
                                             macro_block_size=2, ffmpeg_log_level="error", output_params=params)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        writer = None
        os.replace(tmp, path)
    except BaseException as e:
        if writer is not None:  # let ffmpeg exit first, or it would write the file after we delete it
            try:
                writer.close()
            except Exception:
                pass
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception):
            raise ElmdError(f"{path}: could not write the video ({e}) — check that imageio-ffmpeg works and the folder is writable") from e
        raise
    return path


def _check_args(size: int, seconds: float, fps: float) -> None:
    if size < 16 or size % 2:
        raise ElmdError(f"video size must be an even number >= 16 (H.264 yuv420p), got {size}")
    if seconds <= 0 or fps <= 0 or round(seconds * fps) < 1:
        raise ElmdError(f"need seconds > 0 and fps > 0 giving at least one frame, got seconds={seconds}, fps={fps}")


def _load_manifest(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data.get("clips", {}))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}  # a damaged manifest only costs a regeneration


def _is_current(path: Path, entry: dict | None, key: str) -> bool:
    if not entry or entry.get("spec") != key or not path.exists():
        return False
    return path.stat().st_size == entry.get("bytes") and file_sha256(path) == entry.get("sha256")


def generate_videos(jsonl_path: str | Path, *, size: int = 112, seconds: float = 1.5, fps: float = 10,
                    force: bool = False, progress: bool = True, labels: LabelSet | None = None,
                    workers: int = 0) -> dict:
    """Write the face video of every turn of ``jsonl_path`` (paths relative to the JSONL's folder).

    Clips whose file exists with the same spec and bytes as recorded in the manifest are skipped
    (all are rewritten with ``force``). ``workers`` clips are made at once (0 = one per CPU, at most
    8); the output does not depend on it. Returns counts: written, skipped, total, plus the manifest
    path and the seconds taken.
    """
    _check_args(size, seconds, fps)
    jsonl_path = Path(jsonl_path)
    dialogues = read_dialogues(jsonl_path, labels, resolve_videos=False)
    jobs = _jobs(jsonl_path, dialogues, size, fps, seconds)
    root = Path(os.path.commonpath([str(p.parent) for p in jobs]))
    manifest_path = root / MANIFEST_NAME
    manifest = _load_manifest(manifest_path)
    start, written = time.perf_counter(), 0
    todo = []
    for path, spec in jobs.items():
        rel = os.path.relpath(path, root)
        if force or not _is_current(path, manifest.get(rel), spec.key()):
            todo.append((rel, path, spec))
    workers = max(1, min(workers or os.cpu_count() or 1, 8))
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="face videos", unit="clip", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)  # ffmpeg runs in its own process: threads overlap it
    try:
        futures = {pool.submit(_make, path, spec): (rel, spec) for rel, path, spec in todo}
        for fut in as_completed(futures):
            rel, spec = futures[fut]
            manifest[rel] = {"spec": spec.key(), "emotion": spec.emotion, **fut.result()}
            written += 1
            bar.update(1)
            if written % _SAVE_EVERY == 0:
                _save(manifest_path, manifest)
    finally:  # on an error or Ctrl-C: drop queued clips, keep what is done (a rerun resumes)
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if written:
            _save(manifest_path, manifest)
    return {"written": written, "skipped": len(jobs) - len(todo), "total": len(jobs), "manifest": str(manifest_path),
            "seconds": round(time.perf_counter() - start, 2)}


def _jobs(jsonl_path: Path, dialogues: list[Dialogue], size: int, fps: float, seconds: float) -> dict[Path, ClipSpec]:
    """Absolute video path -> spec for every turn naming a video; checks labels and clashes."""
    jobs: dict[Path, ClipSpec] = {}
    for d in dialogues:
        for i, spec in clip_specs(d, size, fps, seconds):
            if spec.emotion not in EXPRESSIONS:
                raise DataError(jsonl_path, f"dialogue {d.dialogue_id}: no face expression for emotion '{spec.emotion}' "
                                f"(faces exist for {', '.join(EXPRESSIONS)})", "generated videos need M3ED's seven labels")
            video = Path(d.turns[i].video)
            path = (video if video.is_absolute() else jsonl_path.parent / video).resolve()
            if jobs.get(path, spec) != spec:
                raise DataError(jsonl_path, f"dialogue {d.dialogue_id} turn {i}: video {d.turns[i].video} is also used by "
                                "another turn showing a different face", "give every turn its own video path")
            jobs[path] = spec
    if not jobs:
        raise DataError(jsonl_path, "no turn names a 'video' path", "add \"video\": \"videos/<id>_<turn>.mp4\" to the turns")
    return jobs


def _make(path: Path, spec: ClipSpec) -> dict:
    write_mp4(path, render_clip(spec), spec.fps)
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _save(path: Path, clips: dict) -> None:
    atomic_write_json(path, {"generator_version": GENERATOR_VERSION, "clips": dict(sorted(clips.items()))})
