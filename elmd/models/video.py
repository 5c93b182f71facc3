"""Video loading for the visual path (paper Sec. 3.4): m frames, one from the middle of each of m
equal segments, resized to a square and normalised with the CLIP mean / std (BLIP-2's processor).

Decoding uses decord's ``VideoReader`` (which resizes while decoding); OpenCV is the fallback when
decord is missing or cannot open the file. No torchvision: normalisation is plain torch.

A missing, empty or undecodable video raises :class:`VideoError` naming the file; with the
``zero`` policy (``vision.on_bad_video=zero``) :func:`load_video` instead warns and returns
``None`` so that the caller uses all-zero features and counts the video.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from elmd.errors import DataError

log = logging.getLogger(__name__)

SAMPLING_VERSION = 1
"""Bumped whenever frame selection or preprocessing changes (part of every feature-cache key)."""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKENDS = ("auto", "decord", "opencv")
BAD_VIDEO_POLICIES = ("error", "zero")


class VideoError(DataError):
    """A video that cannot be used: missing, empty, or not decodable."""


def sample_frame_indices(num_total: int, m: int) -> list[int]:
    """Index of the middle frame of each of ``m`` equal segments of ``num_total`` frames.

    Segment i covers [i*n/m, (i+1)*n/m); its middle is floor((2i+1)*n / 2m). With fewer frames
    than segments (n < m) the same formula repeats frames, so the result always has m sorted
    indices in [0, n). E.g. n=12, m=4 -> [1, 4, 7, 10]; n=3, m=8 -> [0, 0, 0, 1, 1, 2, 2, 2].
    """
    if m <= 0:
        raise ValueError(f"number of frames m must be positive, got {m}")
    if num_total <= 0:
        raise ValueError(f"video has no frames (num_total={num_total})")
    return [(2 * i + 1) * num_total // (2 * m) for i in range(m)]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(path, "video file not found", "fix the 'video' path in the JSONL, or set vision.on_bad_video=zero")
    if path.is_dir():
        raise VideoError(path, "video path is a folder", "point 'video' at a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "video file is empty (0 bytes)", "re-export the clip, or set vision.on_bad_video=zero")


@contextlib.contextmanager
def _quiet_decoder():
    """Silence decord / FFmpeg while a file is opened: a corrupt file is reported once, by us, as
    one line (FFmpeg's "moov atom not found" and decord's C++ log would otherwise go to stderr)."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_decord(path: Path, **kw):
    import decord

    with _quiet_decoder():
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **kw)


def _load_decord(path: Path, m: int, size: int) -> np.ndarray:
    """Resize while decoding; decord 0.6 fails on some small sizes (row-padding bug), so then
    decode at the native size and resize with OpenCV."""
    import decord

    try:
        vr = _open_decord(path, width=size, height=size)
        return vr.get_batch(sample_frame_indices(len(vr), m)).asnumpy()
    except decord.DECORDError as first:
        try:
            vr = _open_decord(path)
            frames = vr.get_batch(sample_frame_indices(len(vr), m)).asnumpy()
        except decord.DECORDError:
            raise first from None
    import cv2

    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _load_opencv(path: Path, m: int, size: int) -> np.ndarray:
    """Read every frame sequentially (frame counts / seeking in OpenCV are unreliable), keep m."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError("OpenCV cannot open the file")
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA))
    finally:
        cap.release()
    if not frames:
        raise ValueError("no decodable frames")
    picked = [frames[i] for i in sample_frame_indices(len(frames), m)]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in picked])


def load_frames(path: str | Path, m: int, size: int, backend: str = "auto") -> np.ndarray:
    """``m`` RGB frames of ``path`` as uint8 ``[m, size, size, 3]`` (raises :class:`VideoError`)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend '{backend}' (choose {BACKENDS})")
    path = Path(path)
    _check_file(path)
    loaders = {"decord": [_load_decord], "opencv": [_load_opencv], "auto": [_load_decord, _load_opencv]}[backend]
    problems = []
    for loader in loaders:
        name = loader.__name__.removeprefix("_load_")
        try:
            frames = loader(path, m, size)
        except ImportError:
            problems.append(f"{name} not installed")
            continue
        except Exception as e:  # decoders raise their own error types on corrupt data
            problems.append(f"{name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        if frames.shape != (m, size, size, 3):
            problems.append(f"{name}: unexpected frame shape {frames.shape}")
            continue
        return np.ascontiguousarray(frames, dtype=np.uint8)
    raise VideoError(path, f"cannot decode video ({'; '.join(problems)})",
                     "check that the file is a playable video, or set vision.on_bad_video=zero")


def load_video(path: str | Path, m: int, size: int, backend: str = "auto", on_bad_video: str = "error") -> np.ndarray | None:
    """:func:`load_frames` under the bad-video policy: ``None`` (and a warning) for a bad video
    when ``on_bad_video == "zero"``; the :class:`VideoError` otherwise."""
    if on_bad_video not in BAD_VIDEO_POLICIES:
        raise ValueError(f"unknown on_bad_video policy '{on_bad_video}' (choose {BAD_VIDEO_POLICIES})")
    try:
        return load_frames(path, m, size, backend)
    except VideoError as e:
        if on_bad_video == "error":
            raise
        log.warning("using zero video features: %s", e)
        return None


def to_model_input(frames: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 frames ``[..., H, W, 3]`` -> float ``[..., 3, size, size]``, CLIP-normalised.

    Frames are expected already resized (``load_frames`` does it); when ``size`` differs from
    H, W they are resized here with bicubic interpolation.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [..., H, W, 3], got {x.dtype} {tuple(x.shape)}")
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0  # [F, 3, H, W]
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.reshape(*lead, *x.shape[1:])
