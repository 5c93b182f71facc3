"""A sticker library on disk: a folder of images and ``stickers.jsonl`` (issue 14, "Sticker library").

One sticker per line::

    {"id": "cat-happy-0", "image": "images/cat-happy-0.png", "emotion": "happy",
     "description": "一只橘色小猫开心地笑着……", "recommendation": "适合在收到好消息时使用。"}

``image`` is relative to the images folder (``--images``; by default the JSONL's folder) or absolute;
``emotion`` is an id of the label set (M3ED's seven by default, the same seven as StickerConv's
stickers); ``recommendation`` is optional. Every problem raises :class:`~elmd.errors.DataError`
naming the file, line and fix; :func:`open_image` does the same for an image that is not one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from elmd.data.labels import LabelSet
from elmd.errors import DataError
from elmd.io import iter_jsonl

REQUIRED = ("id", "image", "emotion")


@dataclass
class Sticker:
    """One library entry."""

    id: str
    """Unique id of the sticker."""
    image: str
    """Image path as written in the JSONL (relative to the images folder, or absolute)."""
    emotion: str
    """Label id of the emotion the sticker shows."""
    description: str = ""
    """What the sticker shows (StickerConv: the machine-written caption); the SD caption target."""
    recommendation: str = ""
    """When to use it (optional)."""

    def to_dict(self) -> dict:
        return asdict(self)


def read_stickers(meta: str | Path, labels: LabelSet | None = None) -> list[Sticker]:
    """The rows of a ``stickers.jsonl``; a missing field, repeated id or unknown emotion stops with the line."""
    meta, labels = Path(meta), labels or LabelSet()
    rows, seen = [], {}
    fix_file = "write one {id, image, emotion, description} object per line (`elmd sticker draw-library` writes an example)"
    for lineno, raw in iter_jsonl(meta, "sticker file", fix_file):
        if not isinstance(raw, dict):
            raise DataError(meta, "expected a JSON object per line", fix_file, lineno)
        for key in REQUIRED:
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise DataError(meta, f"missing or empty field '{key}'", "every sticker needs id, image and emotion", lineno)
        if raw["emotion"] not in labels:
            raise DataError(meta, f"unknown emotion '{raw['emotion']}' of sticker '{raw['id']}'",
                            f"use one of {', '.join(labels.ids)}", lineno)
        if raw["id"] in seen:
            raise DataError(meta, f"sticker id '{raw['id']}' repeats line {seen[raw['id']]}", "give every sticker a unique id", lineno)
        seen[raw["id"]] = lineno
        rows.append(Sticker(raw["id"], raw["image"], raw["emotion"], str(raw.get("description") or ""),
                            str(raw.get("recommendation") or "")))
    if not rows:
        raise DataError(meta, "contains no stickers", fix_file)
    return rows


def resolve_images(stickers: list[Sticker], images: str | Path, meta: str | Path) -> list[Path]:
    """Absolute path of every sticker's image; a missing one stops naming the JSONL line and the path."""
    images, out = Path(images), []
    for i, s in enumerate(stickers):
        p = Path(s.image) if Path(s.image).is_absolute() else images / s.image
        if not p.is_file():
            raise DataError(meta, f"image of sticker '{s.id}' not found: {p}",
                            "fix the path (relative to --images) or remove the row", _line_of(meta, s.id, i))
        out.append(p.resolve())
    return out


def open_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of an image file (resized to ``size`` x ``size`` when given; transparent
    parts composited on white). A file that is not an image raises :class:`DataError` naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError(path, "image not found", "restore the file or remove its row from stickers.jsonl") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"not a readable image ({type(e).__name__})",
                        "replace it with a PNG/JPEG/WebP/GIF or remove its row from stickers.jsonl") from None


def _line_of(meta, sticker_id: str, fallback: int) -> int:
    """Line number of ``sticker_id`` in ``meta`` (for error messages)."""
    for lineno, raw in iter_jsonl(meta, "sticker file", ""):
        if isinstance(raw, dict) and raw.get("id") == sticker_id:
            return lineno
    return fallback + 1
