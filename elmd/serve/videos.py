"""Uploaded videos of `elmd serve` (``POST /v1/elmd/videos``; issue 16).

An upload is read in chunks and refused past ``max_bytes`` (413); its container is sniffed from
the first bytes (MP4/MOV ``ftyp``, Matroska/WebM EBML, AVI ``RIFF....AVI``), never from the
client's file name or content type (415 otherwise); it is stored under a random name and decoded
ONCE by ``decode(path)`` (the server's: the pipeline's feature store, whose features are kept for
the upload's lifetime), so a corrupt file is a 422 at upload time, not an error in a later batch.
The returned id (``vid_`` + 22 random characters) is what a chat message names; ids expire after
``ttl_s`` and at most ``max_videos`` are kept (the oldest go first).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from elmd.errors import ElmdError

ID = re.compile(r"^vid_[A-Za-z0-9_-]{22}$")
CHUNK = 1 << 20


class UploadError(ElmdError):
    """A refused upload; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


def sniff(head: bytes) -> str | None:
    """The container of a file from its first 16+ bytes: 'mp4', 'webm' or 'avi'; None when unknown."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"  # ISO base media (mp4, m4v, mov, 3gp)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"  # EBML: Matroska / WebM
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


@dataclass
class Video:
    id: str
    path: Path
    bytes: int
    format: str
    born: float
    """time.time() of the upload."""


class VideoStore:
    """Uploads by id. ``decode(path)`` is awaited once per upload (raise to refuse the file);
    ``forget(path)`` is called when an upload expires (drop its cached features)."""

    def __init__(self, root: str | Path, max_bytes: int, ttl_s: float, max_videos: int,
                 decode: Callable[[Path], Awaitable[None]], forget: Callable[[Path], None] | None = None):
        self.root, self.max_bytes, self.ttl_s, self.max_videos = Path(root), max_bytes, ttl_s, max_videos
        self.decode, self.forget = decode, forget
        self.root.mkdir(parents=True, exist_ok=True)
        self._videos: OrderedDict[str, Video] = OrderedDict()
        self._lock = threading.Lock()

    async def add_stream(self, read: Callable[[int], Awaitable[bytes]]) -> Video:
        """Store an upload read by ``await read(n)`` chunks (a Starlette ``UploadFile.read``)."""
        vid = "vid_" + secrets.token_urlsafe(16)
        tmp = self.root / f"{vid}.part"
        size, head = 0, b""
        try:
            with open(tmp, "wb") as f:
                while chunk := await read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadError(f"the video is larger than {self.max_bytes / 2 ** 20:g} MiB", 413)
                    head = (head + chunk)[:64] if len(head) < 64 else head
                    f.write(chunk)
            if size == 0:
                raise UploadError("the uploaded file is empty — send a video file in the 'file' field")
            kind = sniff(head)
            if kind is None:
                raise UploadError("the file is not an MP4/MOV, WebM/MKV or AVI video", 415)
            path = tmp.rename(self.root / f"{vid}.{kind}")
        finally:
            tmp.unlink(missing_ok=True)
        try:
            await self.decode(path)
        except UploadError:
            path.unlink(missing_ok=True)
            raise
        except ElmdError as e:
            path.unlink(missing_ok=True)
            problem = getattr(e, "problem", None) or str(e).replace(str(path), "the upload")
            raise UploadError(f"the video cannot be decoded ({problem})", 422) from None
        video = Video(vid, path, size, kind, time.time())
        with self._lock:
            self._videos[vid] = video
        self.sweep(keep=self.max_videos)
        return video

    async def add_file(self, src: str | Path) -> Video:
        """Store a local file (the web page's upload, already on disk)."""
        src = Path(src)
        with open(src, "rb") as f:
            async def read(n: int) -> bytes:
                return f.read(n)
            return await self.add_stream(read)

    def path_of(self, video_id: str) -> Path:
        """The stored file of ``video_id`` (an :class:`UploadError` 400 when unknown or expired)."""
        with self._lock:
            video = self._videos.get(video_id) if ID.match(video_id or "") else None
        if video is None or time.time() - video.born > self.ttl_s:
            raise UploadError(f"unknown or expired video id '{str(video_id)[:40]}' — upload it again with "
                              "POST /v1/elmd/videos")
        return video.path

    def sweep(self, keep: int | None = None) -> int:
        """Forget expired uploads (and all but the newest ``keep``); how many."""
        now = time.time()
        with self._lock:
            old = [v for v in self._videos.values() if now - v.born > self.ttl_s]
            extra = len(self._videos) - len(old) - (keep if keep is not None else len(self._videos))
            if extra > 0:
                old += [v for v in self._videos.values() if v not in old][:extra]
            for v in old:
                del self._videos[v.id]
        for v in old:
            if self.forget is not None:
                self.forget(v.path)
            v.path.unlink(missing_ok=True)
        return len(old)

    def __len__(self) -> int:
        return len(self._videos)
