"""MP4 files with audio through the ffmpeg binary that the imageio-ffmpeg wheel ships.

:func:`write_mp4` encodes RGB frames (H.264, yuv420p) and muxes a wav (AAC) in one ffmpeg run;
:func:`remux_audio` puts a wav under another tool's video; :func:`probe` reads the streams back
(what ffprobe would say: codec, size, fps, duration, sample rate); :func:`read_video` and
:func:`read_audio` decode a file for the measurements in :mod:`.metrics`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from elmd.errors import ElmdError


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise ElmdError(f"avatar: no ffmpeg binary ({e}) — pip install imageio-ffmpeg") from None


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: int, size: int, audio: Path | None = None) -> int:
    """Encode ``frames`` (size x size x 3 uint8) at ``fps``, with ``audio`` muxed in; returns the
    number of frames written."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=fps, codec="libx264", macro_block_size=16,
                                         quality=None, output_params=["-crf", "20", "-preset", "veryfast", "-movflags", "+faststart"],
                                         audio_path=str(audio) if audio is not None else None,
                                         audio_codec="aac" if audio is not None else None, ffmpeg_log_level="error")
    writer.send(None)
    n = 0
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
            n += 1
    finally:
        writer.close()
    return n


def remux_audio(video: Path, wav: Path, out: Path) -> Path:
    """``out`` = the video stream of ``video`` (re-encoded to H.264) with ``wav`` as its audio."""
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise ElmdError(f"{video}: ffmpeg could not mux the speech under this video ({last})")
    return out


@dataclass
class Probe:
    duration: float
    video_codec: str
    width: int
    height: int
    fps: float
    audio_codec: str
    """'' when the file has no audio stream."""
    sample_rate: int


def probe(path: Path) -> Probe:
    """Streams of a media file, parsed from ``ffmpeg -i`` (imageio-ffmpeg ships no ffprobe)."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    vid = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)[^\n]*?, ([\d.]+) fps", text)
    aud = re.search(r"Stream #\S+.*?: Audio: (\w+).*?, (\d+) Hz", text)
    if not dur or not vid:
        raise ElmdError(f"{path}: not a readable video ({(text.strip().splitlines() or ['?'])[-1]})")
    h, m, s = dur.groups()
    return Probe(int(h) * 3600 + int(m) * 60 + float(s), vid.group(1), int(vid.group(2)), int(vid.group(3)),
                 float(vid.group(4)), aud.group(1) if aud else "", int(aud.group(2)) if aud else 0)


def read_video(path: Path) -> np.ndarray:
    """All frames of a video, T x H x W x 3 uint8."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in gen]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)


def read_audio(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """The audio track of a media file as float32 mono samples at ``sample_rate``."""
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate),
           "-f", "s16le", "pipe:1"]
    done = subprocess.run(cmd, capture_output=True)
    if done.returncode != 0:
        raise ElmdError(f"{path}: ffmpeg could not decode its audio ({done.stderr.decode(errors='replace').strip()[-200:]})")
    return np.frombuffer(done.stdout, dtype=np.int16).astype(np.float32) / 32768.0
