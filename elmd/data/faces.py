"""Synthetic cartoon faces whose expression encodes an emotion (the bundled sample's videos).

The bundled sample (``data/sample/``, README there) needs videos in which the *listener's facial
expression* carries the emotion of the next response, as the real M3ED/CPED clips do in the ELMD
paper (Sec. 3.2: the video of utterance u shows how the interlocutor reacts). This module draws
one frame of such a face with numpy/PIL, from three independent inputs:

* an :class:`Expression` (mouth curve/opening/width, brow height/tilt, eye openness, a one-sided
  upper-lip raise and nose wrinkle); :data:`EXPRESSIONS` holds one exaggerated preset per M3ED
  emotion (table in ``data/sample/README.md``);
* an :class:`Identity` (face shape, skin tone, hair colour and style, eye spacing and size,
  background and shirt colours), a deterministic function of a key such as
  ``"d001/A"`` (:func:`identity_for`), so identities never correlate with emotions;
* a motion state (head offset, tilt, blink, expression intensity), which :func:`face_clip`
  animates: small head sway and jitter, one blink, and the expression easing in.

Nothing but the facial features depends on the emotion (no colours, borders or text).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageDraw

GENERATOR_VERSION = 1
"""Bump when the drawing changes, so cached videos (see sample_videos.py) are regenerated."""

SUPERSAMPLE = 2
"""Frames are drawn this many times larger and downsampled (anti-aliasing)."""


@dataclass(frozen=True)
class Expression:
    """Facial feature parameters, in units of the frame size (mouth/brow offsets) or ratios."""

    mouth_curve: float = 0.0
    """Height of the mouth corners above the mouth centre (>0 smile, <0 frown)."""
    mouth_open: float = 0.0
    """Vertical opening of the mouth."""
    mouth_width: float = 0.17
    """Distance between the mouth corners."""
    brow_raise: float = 0.0
    """Extra height of the eyebrows above their rest position (<0 lowered)."""
    brow_tilt: float = 0.0
    """Height of the inner brow ends relative to the outer ends (>0 worried, <0 angry V)."""
    eye_open: float = 1.0
    """Eye opening relative to a relaxed eye (0 closed, >1 wide)."""
    lip_raise: float = 0.0
    """One-sided raise of the upper lip on the face's left (disgust sneer)."""
    nose_wrinkle: float = 0.0
    """Strength of the wrinkle lines beside the nose (0 = none)."""
    teeth: float = 0.0
    """1 draws a band of upper teeth inside an open mouth."""

    def blend(self, other: "Expression", w: float) -> "Expression":
        """(1 - w) * self + w * other, field by field."""
        return Expression(**{f.name: (1 - w) * getattr(self, f.name) + w * getattr(other, f.name) for f in fields(self)})


EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(),
    "happy": Expression(mouth_curve=0.075, mouth_open=0.075, mouth_width=0.30, brow_raise=0.015, eye_open=0.6, teeth=1.0),
    "surprise": Expression(mouth_open=0.15, mouth_width=0.11, brow_raise=0.055, eye_open=1.75),
    "sad": Expression(mouth_curve=-0.065, mouth_width=0.19, brow_raise=0.01, brow_tilt=0.06, eye_open=0.7),
    "disgust": Expression(mouth_curve=-0.02, mouth_open=0.015, mouth_width=0.19, brow_raise=-0.035, brow_tilt=-0.02,
                          eye_open=0.45, lip_raise=0.065, nose_wrinkle=1.0),
    "anger": Expression(mouth_curve=-0.02, mouth_width=0.12, brow_raise=-0.03, brow_tilt=-0.075, eye_open=0.85),
    "fear": Expression(mouth_curve=-0.03, mouth_open=0.07, mouth_width=0.29, brow_raise=0.05, brow_tilt=0.05,
                       eye_open=1.7, teeth=1.0),
}
"""One exaggerated expression per M3ED emotion (``data/sample/README.md`` describes each)."""


@dataclass(frozen=True)
class Identity:
    """Everything about a face that is not the expression (positions in units of the frame)."""

    face_w: float
    face_h: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int
    eye_spacing: float
    eye_size: float
    eye_y: float
    iris: tuple[int, int, int]
    brow_width: float
    mouth_y: float
    background: tuple[int, int, int]
    shirt: tuple[int, int, int]
    sway_phase: float


_SKINS = [(250, 220, 190), (236, 196, 160), (212, 165, 120), (180, 130, 90), (141, 94, 62), (245, 205, 175)]
_HAIRS = [(30, 25, 20), (70, 45, 25), (120, 80, 40), (200, 170, 90), (90, 90, 95), (150, 50, 30), (20, 20, 40)]


def identity_for(key: str) -> Identity:
    """The identity of a person named by ``key`` (e.g. ``"d001/A"``); deterministic."""
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng(seed)

    def jitter(rgb, amount):
        return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)

    return Identity(
        face_w=float(rng.uniform(0.29, 0.35)),
        face_h=float(rng.uniform(0.36, 0.42)),
        skin=jitter(_SKINS[rng.integers(len(_SKINS))], 12),
        hair=jitter(_HAIRS[rng.integers(len(_HAIRS))], 15),
        hair_style=int(rng.integers(3)),
        eye_spacing=float(rng.uniform(0.105, 0.14)),
        eye_size=float(rng.uniform(0.038, 0.05)),
        eye_y=float(rng.uniform(-0.075, -0.045)),
        iris=jitter([(60, 40, 20), (40, 80, 120), (50, 100, 60), (30, 30, 30)][rng.integers(4)], 10),
        brow_width=float(rng.uniform(0.075, 0.095)),
        mouth_y=float(rng.uniform(0.17, 0.21)),
        background=tuple(int(c) for c in rng.integers(90, 230, size=3)),
        shirt=tuple(int(c) for c in rng.integers(30, 220, size=3)),
        sway_phase=float(rng.uniform(0, 2 * math.pi)),
    )


@dataclass(frozen=True)
class Motion:
    """Per-frame head pose and blink (offsets in units of the frame, tilt in degrees)."""

    dx: float = 0.0
    dy: float = 0.0
    tilt: float = 0.0
    blink: float = 0.0
    """0 = eyes as the expression says, 1 = fully closed."""


def face_regions(identity: Identity) -> dict[str, tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1, in units of the frame) that the brows, eyes, nose and mouth of every
    expression stay inside when the head is at rest (no motion)."""
    cx, cy = 0.5, 0.53
    ey, my = cy + identity.eye_y, cy + identity.mouth_y
    half = identity.eye_spacing + identity.brow_width * 0.6 + 0.01
    eye_half = identity.eye_spacing + identity.eye_size + 0.01
    return {
        "brows": (cx - half, ey - 0.17, cx + half, ey - 0.03),
        "eyes": (cx - eye_half, ey - 0.06, cx + eye_half, ey + 0.06),
        "nose": (cx - 0.09, cy - 0.01, cx + 0.09, cy + 0.11),
        "mouth": (cx - 0.17, my - 0.12, cx + 0.17, my + 0.14),
    }


def draw_face(expression: Expression | str, identity: Identity, size: int = 112, motion: Motion = Motion()) -> np.ndarray:
    """One RGB frame (``size`` x ``size`` x 3, uint8) of ``identity`` showing ``expression``."""
    ex = EXPRESSIONS[expression] if isinstance(expression, str) else expression
    S = size * SUPERSAMPLE
    img = Image.new("RGB", (S, S), identity.background)
    d = ImageDraw.Draw(img)
    cx, cy = (0.5 + motion.dx) * S, (0.53 + motion.dy) * S
    _draw_head(d, identity, cx, cy, S)
    _draw_eyes(d, identity, ex, motion.blink, cx, cy, S)
    _draw_brows(d, identity, ex, cx, cy, S)
    _draw_nose(d, identity, ex, cx, cy, S)
    _draw_mouth(d, identity, ex, cx, cy + identity.mouth_y * S, S)
    img = img.resize((size, size), Image.BOX)
    if motion.tilt:  # rotating after downsampling is SUPERSAMPLE**2 times cheaper and looks the same
        c = (cx / SUPERSAMPLE, cy / SUPERSAMPLE)
        img = img.rotate(motion.tilt, resample=Image.BICUBIC, center=c, fillcolor=identity.background)
    return np.asarray(img)


def _ellipse(d, cx, cy, rx, ry, fill):
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)


def _draw_head(d, idt: Identity, cx, cy, S):
    rx, ry = idt.face_w * S, idt.face_h * S
    d.rectangle([cx - 0.09 * S, cy + 0.8 * ry, cx + 0.09 * S, S], fill=_shade(idt.skin, 0.85))  # neck
    _ellipse(d, cx, S * 1.12, 0.45 * S, 0.22 * S, idt.shirt)  # shoulders
    _ellipse(d, cx - rx, cy, 0.04 * S, 0.06 * S, _shade(idt.skin, 0.92))  # ears
    _ellipse(d, cx + rx, cy, 0.04 * S, 0.06 * S, _shade(idt.skin, 0.92))
    if idt.hair_style == 2:  # long hair behind the head
        d.rectangle([cx - rx * 1.08, cy - 0.2 * ry, cx + rx * 1.08, cy + 0.9 * ry], fill=idt.hair)
    _ellipse(d, cx, cy, rx, ry, idt.skin)
    top = [cx - rx * 1.04, cy - ry * 1.08, cx + rx * 1.04, cy - ry * 0.05]  # hairline at ~0.57 ry above centre
    d.chord(top, 180, 360, fill=idt.hair)
    if idt.hair_style == 1:  # side parting
        d.pieslice([cx - rx * 1.04, cy - ry * 1.08, cx + rx * 0.5, cy - ry * 0.25], 180, 260, fill=_shade(idt.hair, 0.8))


def _draw_eyes(d, idt: Identity, ex: Expression, blink: float, cx, cy, S):
    ey = cy + idt.eye_y * S
    rx = idt.eye_size * S
    ry = rx * 0.62 * max(ex.eye_open, 0.0) * (1.0 - blink)
    for side in (-1, 1):
        x = cx + side * idt.eye_spacing * S
        if ry < 0.12 * rx:  # closed: a lid line
            d.line([x - rx, ey, x + rx, ey], fill=(40, 30, 30), width=max(1, int(0.012 * S)))
            continue
        _ellipse(d, x, ey, rx, ry, (250, 250, 250))
        ir = min(0.5 * rx, ry * 0.95)
        _ellipse(d, x, ey, ir, ir, idt.iris)
        _ellipse(d, x, ey, ir * 0.5, ir * 0.5, (10, 10, 10))
        d.arc([x - rx, ey - ry, x + rx, ey + ry], 180, 360, fill=(40, 30, 30), width=max(1, int(0.01 * S)))


def _draw_brows(d, idt: Identity, ex: Expression, cx, cy, S):
    base = cy + (idt.eye_y - 0.075 - ex.brow_raise) * S
    w = idt.brow_width * S
    for side in (-1, 1):
        inner_x = cx + side * (idt.eye_spacing * S - 0.55 * w)
        outer_x = cx + side * (idt.eye_spacing * S + 0.55 * w)
        inner_y = base - ex.brow_tilt * S * 0.5
        outer_y = base + ex.brow_tilt * S * 0.5
        mid = ((inner_x + outer_x) / 2, (inner_y + outer_y) / 2 - 0.012 * S * (1 + 10 * max(ex.brow_raise, 0)))
        pts = _quad(inner_x, inner_y, mid[0], mid[1], outer_x, outer_y)
        d.line(pts, fill=_shade(idt.hair, 0.6), width=max(2, int(0.028 * S)))


def _draw_nose(d, idt: Identity, ex: Expression, cx, cy, S):
    col = _shade(idt.skin, 0.7)
    d.line([cx, cy + 0.0 * S, cx - 0.02 * S, cy + 0.09 * S, cx + 0.01 * S, cy + 0.095 * S], fill=col, width=max(1, int(0.01 * S)))
    if ex.nose_wrinkle > 0.05:
        width = max(1, int(0.012 * S * ex.nose_wrinkle))
        for side in (-1, 1):
            x = cx + side * 0.045 * S
            d.line([x, cy + 0.02 * S, x + side * 0.02 * S, cy + 0.05 * S], fill=_shade(idt.skin, 0.55), width=width)
            d.line([x + side * 0.005 * S, cy + 0.055 * S, x + side * 0.03 * S, cy + 0.08 * S], fill=_shade(idt.skin, 0.55), width=width)


def _draw_mouth(d, idt: Identity, ex: Expression, cx, my, S):
    hw = ex.mouth_width * S / 2
    c, o = ex.mouth_curve * S, max(ex.mouth_open, 0.0) * S
    lift = ex.lip_raise * S  # raises the upper lip (and corner) on the face's left (image right)
    left, right = (cx - hw, my - c), (cx + hw, my - c - 0.6 * lift)
    upper_mid = (cx + 0.25 * hw, my - 0.3 * o - 0.25 * c - 0.7 * lift)
    lower_mid = (cx, my + 0.7 * o + 0.35 * c)
    lip = (150, 50, 55)
    upper = _quad(*left, *upper_mid, *right)
    if o + lift < 0.01 * S:  # closed: one thick curved line
        d.line(_quad(*left, cx, my + 0.3 * c, *right), fill=lip, width=max(2, int(0.025 * S)))
        return
    lower = _quad(*right, *lower_mid, *left)
    d.polygon(upper + lower, fill=(70, 15, 25), outline=lip, width=max(2, int(0.016 * S)))
    if ex.teeth > 0.5 and o > 0.03 * S:
        band = _quad(left[0] + 0.15 * hw, left[1] + 0.2 * o, upper_mid[0], upper_mid[1] + 0.45 * o, right[0] - 0.15 * hw, right[1] + 0.2 * o)
        d.polygon(upper[2:-2] + band[::-1], fill=(245, 245, 240))
        d.line(upper, fill=lip, width=max(2, int(0.016 * S)))


def _quad(x0, y0, xm, ym, x1, y1, n: int = 9) -> list[tuple[float, float]]:
    """Points of the quadratic curve from (x0, y0) to (x1, y1) passing through (xm, ym) at t = 0.5."""
    px, py = 2 * xm - (x0 + x1) / 2, 2 * ym - (y0 + y1) / 2  # control point
    pts = []
    for k in range(n):
        t = k / (n - 1)
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        pts.append((a * x0 + b * px + c * x1, a * y0 + b * py + c * y1))
    return pts


def _shade(rgb, f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * f))) for c in rgb)


def face_clip(emotion: str, identity: Identity, *, size: int = 112, seconds: float = 1.5, fps: float = 10,
              seed: str = "", ease_seconds: float = 0.4, start_intensity: float = 0.2) -> np.ndarray:
    """Frames (T x size x size x 3, uint8) of ``identity`` reacting with ``emotion``.

    The expression eases in from ``start_intensity`` to full over ``ease_seconds``; the head sways
    and jitters a little and the eyes blink once at a time drawn from ``seed`` (deterministic).
    """
    target = EXPRESSIONS[emotion]
    n = max(1, int(round(seconds * fps)))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"clip:{seed}".encode()).digest()[:8], "little"))
    blink_at = rng.uniform(0.3, 0.9) * seconds
    jitter = rng.normal(0.0, 0.004, size=(n, 2))
    frames = []
    for k in range(n):
        t = k / fps
        w = min(1.0, t / ease_seconds) if ease_seconds > 0 else 1.0
        w = start_intensity + (1 - start_intensity) * (w * w * (3 - 2 * w))  # smoothstep
        ph = identity.sway_phase + 2 * math.pi * 0.6 * t
        motion = Motion(dx=0.012 * math.sin(ph) + jitter[k, 0], dy=0.008 * math.sin(1.7 * ph) + jitter[k, 1],
                        tilt=3.0 * math.sin(0.8 * ph), blink=max(0.0, 1.0 - abs(t - blink_at) * fps / 1.5))
        frames.append(draw_face(EXPRESSIONS["neutral"].blend(target, w), identity, size, motion))
    return np.stack(frames)


__all__ = ["EXPRESSIONS", "Expression", "GENERATOR_VERSION", "Identity", "Motion", "draw_face", "face_clip",
           "face_regions", "identity_for"]
