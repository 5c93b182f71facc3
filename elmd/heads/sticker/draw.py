"""The bundled sticker set: cartoon animals drawn on demand, 7 emotions x 8 characters x poses.

Real sticker sets (SER30K, behind StickerConv) cannot be redistributed, so the project draws its
own, like the sample's face videos (:mod:`elmd.data.faces`). A sticker is a function of
(character, emotion, pose): the character fixes the animal, its colours and ears; the emotion the
face (eyes, brows, mouth, blush) and the sticker's symbol (sparkles, "!", tears, wavy lines, an
anger mark, sweat and fright lines, none); the pose the arms and head tilt. A small seeded jitter
(from the sticker id) moves and scales the figure so that no two stickers are pixel-identical.
Each sticker has a Chinese description and a recommendation of when to use it.

`elmd sticker draw-library` (:func:`draw_library`) writes ``images/<id>.png`` and
``stickers.jsonl`` (the format of :mod:`elmd.heads.sticker.library`) into a git-ignored folder
(``data/sample/stickers/`` by default) and keeps a ``manifest.json`` of spec and file hashes, so a
rerun only draws stickers that are missing, changed or corrupt.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from elmd.data.labels import M3ED_LABELS
from elmd.errors import ElmdError
from elmd.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl

GENERATOR_VERSION = 2
"""Bump when the drawing changes: cached stickers are then redrawn."""
DEFAULT_OUT = Path("data/sample/stickers")
SUPERSAMPLE = 2
FIGURE_SCALE = 1.5
"""Size of the figure relative to the sticker (1.0: the whole animal is in view; 1.5: a big head with the
arms in view, like most chat stickers; a frozen encoder then sees the face at the size it sees faces)."""
HEAD_Y = 0.5
"""Vertical position of the head's centre, in units of the sticker side."""


@dataclass(frozen=True)
class Character:
    key: str
    name: str
    """Chinese name used in descriptions."""
    colour_word: str
    body: tuple[int, int, int]
    belly: tuple[int, int, int]
    ears: str
    """cat | dog | bear | rabbit | panda | none | frog | tuft."""


CHARACTERS: tuple[Character, ...] = (
    Character("cat", "小猫", "橘色", (245, 160, 70), (255, 225, 190), "cat"),
    Character("dog", "小狗", "棕色", (170, 115, 70), (235, 210, 180), "dog"),
    Character("bear", "小熊", "咖啡色", (140, 95, 60), (215, 175, 130), "bear"),
    Character("rabbit", "兔子", "白色", (245, 245, 245), (255, 215, 225), "rabbit"),
    Character("panda", "熊猫", "黑白", (250, 250, 250), (250, 250, 250), "panda"),
    Character("penguin", "企鹅", "深蓝色", (50, 70, 110), (250, 250, 250), "none"),
    Character("frog", "青蛙", "绿色", (110, 190, 90), (200, 235, 170), "frog"),
    Character("chick", "小鸡", "黄色", (255, 215, 60), (255, 240, 160), "tuft"),
)

POSES: tuple[tuple[str, str], ...] = (("down", "双手垂在身旁"), ("up", "高高举起双手"), ("tilt", "歪着脑袋"))
"""Pose key and its description; stickers use the first ``poses`` of these."""

EMOTION_TEXT: dict[str, tuple[str, str, str]] = {
    "happy": ("眯着眼睛开怀大笑，脸颊泛红", "身边闪着金色的星星", "适合在分享好消息、表达开心和感谢时使用。"),
    "surprise": ("瞪圆了眼睛，张大嘴巴", "头顶冒出一个感叹号", "适合在听到意外消息、表示吃惊时使用。"),
    "sad": ("皱着眉头，嘴角向下", "眼角挂着泪珠", "适合在难过、失落或想要安慰时使用。"),
    "disgust": ("眯着眼睛撇着嘴，吐出舌头", "旁边飘着绿色的波浪线", "适合在表达嫌弃、反感时使用。"),
    "anger": ("眉毛竖起，咬紧牙关，满脸通红", "额头上冒着红色的怒气符号", "适合在生气、抗议或表达不满时使用。"),
    "fear": ("睁大眼睛，嘴巴发抖", "额头上挂着冷汗，脸上有几道惊吓的竖线", "适合在害怕、紧张或担心时使用。"),
    "neutral": ("表情平静，嘴巴抿成一条线", "", "适合在日常聊天、随口回应时使用。"),
}


def sticker_id(character: str, emotion: str, pose: str) -> str:
    return f"{character}-{emotion}-{pose}"


def describe(ch: Character, emotion: str, pose_text: str) -> str:
    face, symbol, _ = EMOTION_TEXT[emotion]
    return f"一只{ch.colour_word}的{ch.name}{face}，{pose_text}" + (f"，{symbol}" if symbol else "") + "。"


def draw_sticker(character: Character, emotion: str, pose: str, size: int = 128) -> np.ndarray:
    """One RGB sticker (``size`` x ``size`` x 3, uint8) on a white background; deterministic."""
    if emotion not in EMOTION_TEXT:
        raise ValueError(f"unknown emotion {emotion!r}")
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(sticker_id(character.key, emotion, pose).encode()).digest()[:8], "little"))
    S = size * SUPERSAMPLE
    img = Image.new("RGB", (S, S), (255, 255, 255))
    d = ImageDraw.Draw(img)
    scale = S * FIGURE_SCALE * float(rng.uniform(0.92, 1.05))
    cx, cy = S * (0.5 + rng.uniform(-0.03, 0.03)), S * (HEAD_Y + rng.uniform(-0.02, 0.02))
    tilt = {"tilt": float(rng.choice([-1, 1])) * 12.0}.get(pose, 0.0)
    _body(d, character, pose, cx, cy, scale)
    head = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    hd = ImageDraw.Draw(head)
    _head(hd, character, cx, cy, scale)
    _face(hd, character, emotion, cx, cy, scale)
    if tilt:
        head = head.rotate(tilt, resample=Image.BICUBIC, center=(cx, cy + 0.1 * scale))
    img.paste(head, (0, 0), head)
    sym = min(scale, S * 1.05)  # symbols stay inside the frame however big the figure
    _symbol(d, emotion, S * 0.5 + (cx - S * 0.5) * 0.5, S * 0.45, sym)
    return np.asarray(img.resize((size, size), Image.BOX))


def _ell(d, cx, cy, rx, ry, fill, outline=None, width=1):
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill, outline=outline, width=width)


def _dark(rgb, f=0.55):
    return tuple(int(c * f) for c in rgb)


def _body(d, ch: Character, pose: str, cx, cy, s):
    line = max(2, int(0.012 * s))
    out = _dark(ch.body, 0.45) if ch.key != "panda" else (30, 30, 30)
    by = cy + 0.3 * s
    limb = (35, 35, 35) if ch.key == "panda" else ch.body
    for side in (-1, 1):  # arms
        x0, y0 = cx + side * 0.17 * s, by - 0.05 * s
        x1, y1 = (cx + side * 0.3 * s, by - 0.3 * s) if pose == "up" else (cx + side * 0.25 * s, by + 0.08 * s)
        d.line([x0, y0, x1, y1], fill=out, width=int(0.075 * s))
        d.line([x0, y0, x1, y1], fill=limb, width=int(0.055 * s))
        _ell(d, x1, y1, 0.035 * s, 0.035 * s, limb, out, line)
    _ell(d, cx, by, 0.2 * s, 0.17 * s, ch.body, out, line)
    _ell(d, cx, by + 0.02 * s, 0.12 * s, 0.11 * s, ch.belly)
    for side in (-1, 1):  # feet
        _ell(d, cx + side * 0.09 * s, by + 0.16 * s, 0.06 * s, 0.035 * s, limb, out, line)


def _head(d, ch: Character, cx, cy, s):
    line = max(2, int(0.012 * s))
    out = _dark(ch.body, 0.45) if ch.key != "panda" else (30, 30, 30)
    r = 0.25 * s
    ear = (35, 35, 35) if ch.key == "panda" else ch.body
    if ch.ears == "cat":
        for side in (-1, 1):
            pts = [(cx + side * 0.08 * s, cy - 0.2 * s), (cx + side * 0.24 * s, cy - 0.3 * s), (cx + side * 0.22 * s, cy - 0.08 * s)]
            d.polygon(pts, fill=ear, outline=out, width=line)
    elif ch.ears in ("bear", "panda"):
        for side in (-1, 1):
            _ell(d, cx + side * 0.18 * s, cy - 0.19 * s, 0.07 * s, 0.07 * s, ear, out, line)
    elif ch.ears == "rabbit":
        for side in (-1, 1):
            _ell(d, cx + side * 0.09 * s, cy - 0.33 * s, 0.05 * s, 0.14 * s, ear, out, line)
            _ell(d, cx + side * 0.09 * s, cy - 0.33 * s, 0.022 * s, 0.1 * s, (255, 190, 205))
    elif ch.ears == "frog":
        for side in (-1, 1):
            _ell(d, cx + side * 0.12 * s, cy - 0.2 * s, 0.075 * s, 0.07 * s, ear, out, line)
    elif ch.ears == "tuft":
        for dx in (-0.03, 0.0, 0.03):
            d.line([cx + dx * s, cy - 0.24 * s, cx + 2 * dx * s, cy - 0.33 * s], fill=out, width=line * 2)
    _ell(d, cx, cy, r, r * 0.92, ch.body, out, line)
    if ch.ears == "dog":
        for side in (-1, 1):
            _ell(d, cx + side * 0.23 * s, cy - 0.02 * s, 0.06 * s, 0.13 * s, _dark(ch.body, 0.75), out, line)
    if ch.key == "penguin":
        _ell(d, cx, cy + 0.04 * s, 0.19 * s, 0.15 * s, ch.belly)
    if ch.key == "panda":
        for side in (-1, 1):
            _ell(d, cx + side * 0.085 * s, cy - 0.01 * s, 0.055 * s, 0.065 * s, (35, 35, 35))
    if ch.key == "chick":
        d.polygon([(cx - 0.04 * s, cy + 0.04 * s), (cx + 0.04 * s, cy + 0.04 * s), (cx, cy + 0.09 * s)], fill=(245, 140, 40))


def _face(d, ch: Character, emotion: str, cx, cy, s):
    ink = (30, 25, 25)
    line = max(2, int(0.016 * s))
    ex, ey, my = 0.085 * s, cy - 0.01 * s, cy + 0.11 * s
    white = (255, 255, 255)
    if emotion in ("happy", "anger", "disgust", "fear", "sad"):  # blush or tint
        tint = {"happy": (255, 150, 160), "anger": (235, 60, 50), "disgust": (140, 190, 90), "fear": (150, 170, 235), "sad": (150, 180, 235)}[emotion]
        for side in (-1, 1):
            _ell(d, cx + side * 0.16 * s, cy + 0.08 * s, 0.045 * s, 0.025 * s, tint)
    for side in (-1, 1):
        x = cx + side * ex
        if emotion == "happy":  # ^ ^
            d.arc([x - 0.04 * s, ey - 0.02 * s, x + 0.04 * s, ey + 0.05 * s], 200, 340, fill=ink, width=line)
        elif emotion == "disgust":  # squint lines
            d.line([x - 0.04 * s, ey + 0.01 * s, x + 0.04 * s, ey - side * 0.01 * s], fill=ink, width=line)
        elif emotion in ("surprise", "fear"):
            _ell(d, x, ey, 0.045 * s, 0.05 * s, white, ink, line)
            _ell(d, x, ey, (0.012 if emotion == "fear" else 0.022) * s, (0.012 if emotion == "fear" else 0.022) * s, ink)
        elif emotion == "sad":
            _ell(d, x, ey + 0.01 * s, 0.022 * s, 0.026 * s, ink)
            d.line([x - side * 0.01 * s, ey - 0.07 * s, x + side * 0.05 * s, ey - 0.045 * s], fill=ink, width=line)
        elif emotion == "anger":
            _ell(d, x, ey + 0.01 * s, 0.022 * s, 0.022 * s, ink)
            d.line([x - side * 0.05 * s, ey - 0.07 * s, x + side * 0.02 * s, ey - 0.035 * s], fill=ink, width=line + 1)
        else:  # neutral
            _ell(d, x, ey, 0.02 * s, 0.022 * s, ink)
        if emotion in ("surprise",):
            d.arc([x - 0.04 * s, ey - 0.11 * s, x + 0.04 * s, ey - 0.06 * s], 200, 340, fill=ink, width=line)
    if emotion == "happy":
        d.chord([cx - 0.07 * s, my - 0.05 * s, cx + 0.07 * s, my + 0.05 * s], 0, 180, fill=(200, 60, 70), outline=ink, width=line)
    elif emotion == "surprise":
        _ell(d, cx, my + 0.01 * s, 0.03 * s, 0.04 * s, (120, 30, 40), ink, line)
    elif emotion == "sad":
        d.arc([cx - 0.05 * s, my, cx + 0.05 * s, my + 0.06 * s], 200, 340, fill=ink, width=line)
    elif emotion == "disgust":
        pts = [(cx - 0.06 * s + i * 0.02 * s, my + (0.01 if i % 2 else -0.01) * s) for i in range(7)]
        d.line(pts, fill=ink, width=line)
        _ell(d, cx + 0.02 * s, my + 0.03 * s, 0.02 * s, 0.022 * s, (230, 100, 120))
    elif emotion == "anger":
        d.rectangle([cx - 0.06 * s, my - 0.015 * s, cx + 0.06 * s, my + 0.025 * s], fill=white, outline=ink, width=line)
        d.line([cx - 0.06 * s, my + 0.005 * s, cx + 0.06 * s, my + 0.005 * s], fill=ink, width=max(1, line // 2))
    elif emotion == "fear":
        pts = [(cx - 0.06 * s + i * 0.015 * s, my + (0.012 if i % 2 else -0.012) * s) for i in range(9)]
        d.line(pts, fill=ink, width=line)
    else:
        d.line([cx - 0.04 * s, my, cx + 0.04 * s, my], fill=ink, width=line)


def _symbol(d, emotion: str, cx, cy, s):
    line = max(2, int(0.014 * s))
    if emotion == "happy":
        for (dx, dy, r) in ((-0.33, -0.3, 0.05), (0.33, -0.22, 0.04), (0.3, 0.2, 0.035)):
            x, y, r = cx + dx * s, cy + dy * s, r * s
            d.polygon([(x, y - r), (x + 0.3 * r, y - 0.3 * r), (x + r, y), (x + 0.3 * r, y + 0.3 * r), (x, y + r),
                       (x - 0.3 * r, y + 0.3 * r), (x - r, y), (x - 0.3 * r, y - 0.3 * r)], fill=(250, 195, 30))
    elif emotion == "surprise":
        x, y = cx + 0.3 * s, cy - 0.34 * s
        d.polygon([(x - 0.03 * s, y - 0.08 * s), (x + 0.03 * s, y - 0.08 * s), (x + 0.012 * s, y + 0.03 * s), (x - 0.012 * s, y + 0.03 * s)], fill=(230, 40, 40))
        _ell(d, x, y + 0.065 * s, 0.02 * s, 0.02 * s, (230, 40, 40))
    elif emotion == "sad":
        for side in (-1, 1):
            x, y = cx + side * 0.1 * s, cy + 0.06 * s
            d.polygon([(x, y - 0.03 * s), (x - 0.02 * s, y + 0.01 * s), (x + 0.02 * s, y + 0.01 * s)], fill=(80, 150, 235))
            _ell(d, x, y + 0.015 * s, 0.02 * s, 0.02 * s, (80, 150, 235))
    elif emotion == "disgust":
        for k in range(3):
            x0, y0 = cx + 0.28 * s, cy - 0.15 * s + k * 0.06 * s
            d.line([(x0 + i * 0.02 * s, y0 + (0.012 if i % 2 else -0.012) * s) for i in range(6)], fill=(90, 170, 60), width=line)
    elif emotion == "anger":
        x, y = cx + 0.27 * s, cy - 0.27 * s
        for a in (45, 135, 225, 315):
            dx, dy = math.cos(math.radians(a)), math.sin(math.radians(a))
            d.arc([x + dx * 0.035 * s - 0.03 * s, y + dy * 0.035 * s - 0.03 * s, x + dx * 0.035 * s + 0.03 * s,
                   y + dy * 0.035 * s + 0.03 * s], a + 90, a + 270, fill=(225, 30, 30), width=line)
    elif emotion == "fear":
        for dx in (-0.06, -0.02, 0.02, 0.06):
            d.line([cx + dx * s, cy - 0.2 * s, cx + dx * s, cy - 0.12 * s], fill=(90, 110, 200), width=line)
        x, y = cx + 0.24 * s, cy - 0.12 * s
        d.polygon([(x, y - 0.04 * s), (x - 0.025 * s, y + 0.01 * s), (x + 0.025 * s, y + 0.01 * s)], fill=(120, 190, 240))
        _ell(d, x, y + 0.015 * s, 0.025 * s, 0.025 * s, (120, 190, 240))


def _png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def library_rows(poses: int = 2) -> list[tuple[dict, Character, str, str]]:
    """(stickers.jsonl row, character, emotion, pose key) of every sticker of the bundled set."""
    if not 1 <= poses <= len(POSES):
        raise ElmdError(f"poses must be 1..{len(POSES)}, got {poses}")
    out = []
    for ch in CHARACTERS:
        for emotion in M3ED_LABELS:
            for pose, pose_text in POSES[:poses]:
                sid = sticker_id(ch.key, emotion, pose)
                row = {"id": sid, "image": f"images/{sid}.png", "emotion": emotion,
                       "description": describe(ch, emotion, pose_text), "recommendation": EMOTION_TEXT[emotion][2]}
                out.append((row, ch, emotion, pose))
    return out


def draw_library(out: str | Path = DEFAULT_OUT, size: int = 128, poses: int = 2, force: bool = False) -> dict:
    """Draw the bundled set into ``out`` (images/ + stickers.jsonl); returns counts drawn / cached."""
    if size < 32:
        raise ElmdError(f"sticker size must be >= 32 px, got {size}")
    out = Path(out)
    manifest_path = out / "manifest.json"
    try:
        manifest = {} if force else json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    counts = {"drawn": 0, "cached": 0}
    rows, new_manifest = [], {}
    for row, ch, emotion, pose in library_rows(poses):
        key = hashlib.sha256(json.dumps([GENERATOR_VERSION, row["id"], size]).encode()).hexdigest()[:16]
        path = out / row["image"]
        old = manifest.get(row["id"], {})
        if old.get("key") == key and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == old.get("sha256"):
            counts["cached"] += 1
            new_manifest[row["id"]] = old
        else:
            data = _png_bytes(draw_sticker(ch, emotion, pose, size))
            atomic_write_bytes(path, data)
            new_manifest[row["id"]] = {"key": key, "sha256": hashlib.sha256(data).hexdigest()}
            counts["drawn"] += 1
        rows.append(row)
    atomic_write_jsonl(out / "stickers.jsonl", rows)
    atomic_write_json(manifest_path, new_manifest)
    return {**counts, "stickers": len(rows)}
