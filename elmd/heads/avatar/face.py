"""Talking faces (issue 15 item 3): the backend interface and the default cartoon renderer.

:class:`FaceBackend` turns ``(wav, emotion, profile, reference)`` into an MP4 with the speech
muxed in. The default, :class:`CartoonFace`, animates the project's own face drawing
(:func:`elmd.data.faces.draw_face`, the faces the sample's videos and the REP path were made on)
at ``avatar.fps``:

* the mouth opens with the speech: frame k's opening is (RMS / loudest RMS) ** 0.7 of the audio in
  [k / fps, (k + 1) / fps), times ``avatar.mouth_gain``, added to the expression's own opening; no
  smoothing, so the video is not late;
* the emotion's expression (:data:`elmd.data.faces.EXPRESSIONS`) eases in over 0.3 s from half
  to ``avatar.expression_intensity``;
* blinks every 2-4.5 s (drawn from the identity key), a small head sway and a nod on loud frames;
* identity: :func:`avatar_identity` of the responder's key, with hair by gender (long for
  female) and age (grey for elderly, greying for middle-aged).

Real models run as subprocesses (:mod:`.face_subprocess`); a reference-face bank
(:class:`FaceBank`) gives them the portrait by gender and age.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from elmd.data.faces import EXPRESSIONS, Identity, Motion, draw_face, face_regions, identity_for
from elmd.errors import DataError, ElmdError
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.metrics import frame_energy
from elmd.heads.avatar.mux import write_mp4
from elmd.heads.avatar.speech import read_wav

MOUTH_OPEN_MAX = 0.085
"""Mouth opening (in units of the frame) added at the loudest frame when mouth_gain = 1."""


@dataclass
class Reference:
    """Whose face: a drawn identity key and, for photo-driven backends, a portrait image."""

    identity_key: str
    image: Path | None = None


@dataclass
class FaceResult:
    video: Path
    """MP4 with the speech muxed in."""
    frames: int
    fps: int
    mouth: list[float] = field(default_factory=list)
    """Mouth opening drawn in each frame (units of the frame); [] for external backends."""
    backend: str = ""
    settings: dict = field(default_factory=dict)


class FaceBackend(Protocol):
    name: str

    def render(self, wav: Path, emotion: str, profile: Profile, reference: Reference, out: Path) -> FaceResult:
        """Write ``out`` (MP4 with audio) showing ``reference`` speaking ``wav`` with ``emotion``."""


def avatar_identity(key: str, profile: Profile) -> Identity:
    """The drawn identity of responder ``key`` with hair by ``profile`` (module docstring)."""
    idt = identity_for(f"avatar/{key}")
    style = 2 if profile.gender == "female" else idt.hair_style % 2
    hair = idt.hair
    if profile.age == "elderly":
        hair = (200, 200, 205)
    elif profile.age == "middle-aged":
        hair = tuple(int(0.6 * c + 0.4 * 140) for c in hair)
    face_w = idt.face_w * (0.95 if profile.gender == "female" else 1.03)
    return replace(idt, hair_style=style, hair=hair, face_w=face_w)


def mouth_track(x: np.ndarray, sr: int, fps: int, n_frames: int, power: float = 0.7) -> np.ndarray:
    """Speech-driven mouth opening in [0, 1] per video frame (module docstring)."""
    e = frame_energy(x, sr, fps, n_frames)
    return (e / max(float(e.max()), 1e-12)) ** power


def blink_times(key: str, seconds: float) -> list[float]:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"blink:{key}".encode()).digest()[:8], "little"))
    times, t = [], float(rng.uniform(0.6, 1.8))
    while t < seconds:
        times.append(t)
        t += float(rng.uniform(2.0, 4.5))
    return times


class CartoonFace:
    """The default renderer (module docstring)."""

    name = "cartoon"

    def __init__(self, fps: int = 25, size: int = 256, mouth_gain: float = 1.0, intensity: float = 1.0):
        self.fps, self.size, self.mouth_gain, self.intensity = fps, size, mouth_gain, intensity

    def render(self, wav: Path, emotion: str, profile: Profile, reference: Reference, out: Path) -> FaceResult:
        if emotion not in EXPRESSIONS:
            raise ElmdError(f"avatar: no facial expression for emotion '{emotion}' — use one of {sorted(EXPRESSIONS)}")
        x, sr = read_wav(wav)
        n = max(1, int(math.ceil(len(x) * self.fps / sr)))
        identity = avatar_identity(reference.identity_key, profile)
        opening = MOUTH_OPEN_MAX * self.mouth_gain * mouth_track(x, sr, self.fps, n)
        blinks = blink_times(reference.identity_key, n / self.fps)
        drawn: list[float] = []

        def frames():
            for k in range(n):
                ex, motion = self.pose(k, emotion, identity, float(opening[k]), blinks)
                drawn.append(round(float(ex.mouth_open), 5))
                yield draw_face(ex, identity, self.size, motion)

        written = write_mp4(out, frames(), self.fps, self.size, audio=wav)
        return FaceResult(out, written, self.fps, drawn, self.name,
                          {"identity_key": reference.identity_key, "size": self.size, "mouth_gain": self.mouth_gain,
                           "intensity": self.intensity})

    def pose(self, k: int, emotion: str, identity: Identity, opening: float, blinks: list[float]):
        """Expression and motion of frame ``k`` (``opening``: speech-driven extra mouth opening)."""
        t = k / self.fps
        w = min(1.0, t / 0.3)
        w = self.intensity * (0.5 + 0.5 * w * w * (3 - 2 * w))
        ex = EXPRESSIONS["neutral"].blend(EXPRESSIONS[emotion], w)
        if opening > 0.1 * MOUTH_OPEN_MAX and ex.mouth_curve < 0:  # a frown's lips meet 0.6 * curve apart:
            opening += 0.6 * -ex.mouth_curve                      # part them when speaking
        ex = replace(ex, mouth_open=ex.mouth_open + opening)
        blink = max((max(0.0, 1.0 - abs(t - b) * self.fps / 2.0) for b in blinks), default=0.0)
        ph = identity.sway_phase + 2 * math.pi * 0.35 * t
        motion = Motion(dx=0.008 * math.sin(ph), dy=0.005 * math.sin(1.7 * ph) + 0.05 * opening,
                        tilt=2.0 * math.sin(0.8 * ph), blink=blink)
        return ex, motion

    def still(self, reference: Reference, profile: Profile, emotion: str = "neutral") -> np.ndarray:
        """One frame of the identity at rest (the reference image of the identity check)."""
        return draw_face(emotion, avatar_identity(reference.identity_key, profile), self.size)

    def mouth_box(self, reference: Reference, profile: Profile) -> tuple[float, float, float, float]:
        return face_regions(avatar_identity(reference.identity_key, profile))["mouth"]


class FaceBank:
    """Reference portraits by gender and age: ``faces.json`` = a list of
    ``{"image": "file.png", "gender": "female", "age": "young"}`` beside the images."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / "faces.json"
        if not index.is_file():
            raise DataError(index, "reference-face bank index not found",
                            'write faces.json: [{"image": "f.png", "gender": "female", "age": "young"}, ...]')
        try:
            self.entries = json.loads(index.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(index, f"malformed JSON ({e.msg})", "fix the file") from None
        if not isinstance(self.entries, list) or not self.entries:
            raise DataError(index, "expected a non-empty list of faces", 'e.g. [{"image": "f.png", "gender": "female"}]')

    def pick(self, profile: Profile) -> Path:
        """The portrait matching gender and age, else gender, else the first; must exist."""
        def score(e):
            return 2 * (e.get("gender") == profile.gender) + (e.get("age") == profile.age)

        entry = max(self.entries, key=score)
        path = self.folder / str(entry.get("image", ""))
        if not path.is_file():
            raise DataError(path, "reference face not found", f"add the image or fix its entry in {self.folder / 'faces.json'}")
        return path
