"""Generated media of `elmd serve` (sticker images, avatar audio / video) under ``/media/<name>``.

The heads write into a private folder (``Pipeline.media_dir``); right after each batch
:meth:`MediaStore.publish_extras` moves the files a reply's ``extras`` name into the served folder
under unguessable names (``secrets.token_urlsafe(24)`` + the file's suffix) and returns their URLs.
Files expire ``ttl_s`` after they were published. A ``/media/`` request is answered only for a name
of that exact shape that exists and has not expired, so no request path reaches the filesystem
unchecked (no ``..``, no sub-folders, no other suffixes).
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from pathlib import Path

SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".wav", ".mp3", ".mp4", ".webm")
NAME = re.compile(r"^[A-Za-z0-9_-]{32}(" + "|".join(re.escape(s) for s in SUFFIXES) + r")$")

MEDIA_KEYS = {("sticker", "path"): "sticker_url", ("avatar", "audio"): "avatar_audio_url",
              ("avatar", "video"): "avatar_video_url"}
"""(head, extras key) -> field of :class:`~elmd.serve.protocol.ElmdInfo` holding the file's URL."""


class MediaStore:
    """The served media folder: ``publish(path) -> name``, ``path_of(name)``, ``sweep()``."""

    def __init__(self, root: str | Path, ttl_s: float, url_prefix: str = "/media/"):
        self.root, self.ttl_s, self.url_prefix = Path(root), ttl_s, url_prefix
        self.root.mkdir(parents=True, exist_ok=True)
        self._born: dict[str, float] = {}
        self._lock = threading.Lock()

    def publish(self, src: Path) -> str | None:
        """Move ``src`` into the served folder; its new name (None for a missing file or another suffix)."""
        suffix = src.suffix.lower()
        if suffix not in SUFFIXES or not src.is_file():
            return None
        name = secrets.token_urlsafe(24) + suffix  # 32 url-safe characters
        shutil.move(str(src), self.root / name)
        with self._lock:
            self._born[name] = time.monotonic()
        return name

    def path_of(self, name: str) -> Path | None:
        """The file served as ``name``, or None (bad shape, unknown or expired)."""
        if not NAME.match(name):
            return None
        with self._lock:
            born = self._born.get(name)
        if born is None or time.monotonic() - born > self.ttl_s:
            return None
        path = self.root / name
        return path if path.is_file() else None

    def sweep(self) -> int:
        """Delete expired files; how many."""
        now = time.monotonic()
        with self._lock:
            old = [n for n, t in self._born.items() if now - t > self.ttl_s]
            for n in old:
                del self._born[n]
        for n in old:
            (self.root / n).unlink(missing_ok=True)
        return len(old)

    def publish_extras(self, extras: dict, media_dir: Path) -> tuple[dict, dict]:
        """``(urls, heads)`` of a reply: URLs of its head files (:data:`MEDIA_KEYS`) and the heads'
        other JSON fields (file paths removed). Paths outside ``media_dir`` are never published."""
        urls, heads = {}, {}
        base = Path(media_dir).resolve()
        for head, value in extras.items():
            if not isinstance(value, dict):
                continue
            rest = {}
            for key, v in value.items():
                field = MEDIA_KEYS.get((head, key))
                if field is None:
                    if key not in ("reference", "candidates"):  # more server paths: not shown
                        rest[key] = v
                    continue
                path = Path(str(v))
                path = (path if path.is_absolute() else base / path).resolve()
                name = self.publish(path) if path.is_relative_to(base) else None
                if name:
                    urls[field] = self.url_prefix + name
            heads[head] = rest
        return urls, heads
