"""``render_avatar``: reply text + emotion + profile -> an output folder with speech and a talking face.

The folder (swapped in whole by :func:`elmd.io.atomic_dir`; an existing one is kept unless
``overwrite``)::

    speech.wav      16-bit mono speech of the reply (the speech backend)
    avatar.mp4      H.264 + AAC talking face with that speech (the face backend)
    reference.png   the face at rest (the identity reference; the portrait for photo backends)
    meta.json       text, emotion, profile, backends and their settings, word timings, drawn mouth track

Everything is checked before anything is written: empty text or text without a Chinese character,
an emotion without prosody / expression, a missing reference face, a backend folder without
checkpoints each stop with one line.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from elmd.errors import ElmdError
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.face import CartoonFace, FaceBackend, FaceBank, Reference
from elmd.heads.avatar.meta import VOICE_STYLE, Profile
from elmd.heads.avatar.speech import PROSODY, EspeakBackend, SpeechBackend, check_reply_text
from elmd.io import atomic_dir, atomic_write_json

EMOTIONS = tuple(PROSODY)
"""Emotions the default backends can show (M3ED's seven)."""


@dataclass
class AvatarResult:
    """Where one rendered reply went (paths inside ``folder``)."""

    folder: Path
    audio: Path
    video: Path
    reference: Path
    emotion: str
    profile: Profile
    duration: float
    """Seconds of speech."""
    frames: int

    def as_extras(self, relative_to: Path | None = None) -> dict:
        """The ``reply.extras["avatar"]`` entry (paths relative to ``relative_to`` when given)."""
        rel = (lambda p: str(p.relative_to(relative_to))) if relative_to is not None else str  # noqa: E731
        return {"audio": rel(self.audio), "video": rel(self.video), "reference": rel(self.reference),
                "emotion": self.emotion, "gender": self.profile.gender, "age": self.profile.age,
                "duration": round(self.duration, 3), "frames": self.frames}


def build_speech(cfg: AvatarConfig) -> SpeechBackend:
    if cfg.speech == "espeak":
        return EspeakBackend()
    from elmd.heads.avatar.neural import build_neural_speech

    return build_neural_speech(cfg)


def build_face(cfg: AvatarConfig) -> FaceBackend:
    if cfg.face == "cartoon":
        return CartoonFace(cfg.fps, cfg.size, cfg.mouth_gain, cfg.expression_intensity)
    from elmd.heads.avatar.face_subprocess import SubprocessFace

    return SubprocessFace.from_config(cfg)


def render_avatar(text: str, emotion: str, out: str | Path, cfg: AvatarConfig | None = None,
                  profile: Profile | None = None, identity_key: str = "", overwrite: bool = False,
                  speech: SpeechBackend | None = None, face: FaceBackend | None = None, style: str = "") -> AvatarResult:
    """Render one reply into the folder ``out`` (module docstring); backends are built from
    ``cfg`` unless given (the head builds them once). ``style``: a voice style (语气, a value of
    :data:`VOICE_STYLE`, e.g. a parsed meta-response's): the speech takes the prosody of the emotion
    it belongs to, the face keeps ``emotion``; '' or an unknown style = ``emotion``'s own."""
    cfg = cfg or AvatarConfig()
    out = Path(out)
    text = check_reply_text(text)
    if emotion not in EMOTIONS:
        raise ElmdError(f"avatar: unknown emotion '{emotion}' — use one of {list(EMOTIONS)}")
    if out.exists() and not overwrite:
        raise ElmdError(f"{out}: already exists — pass --overwrite to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise ElmdError(f"{out}: is a file — choose a folder for --out")
    profile = profile or Profile(cfg.gender, cfg.age)
    voiced = next((e for e, s in VOICE_STYLE.items() if s == style), emotion)
    key = identity_key or f"{profile.gender}/{profile.age}"
    portrait = FaceBank(cfg.face_bank).pick(profile) if cfg.face_bank else None
    speech = speech or build_speech(cfg)
    face = face or build_face(cfg)
    with atomic_dir(out) as tmp:
        said = speech.synthesize(text, voiced, profile, tmp / "speech.wav")
        reference = tmp / "reference.png"
        if portrait is not None:
            shutil.copyfile(portrait, reference)
        else:
            Image.fromarray(CartoonFace(cfg.fps, cfg.size).still(Reference(key), profile)).save(reference)
        shown = face.render(said.wav, emotion, profile, Reference(key, reference), tmp / "avatar.mp4")
        atomic_write_json(tmp / "meta.json", {
            "text": text, "emotion": emotion, "style": VOICE_STYLE[voiced], "profile": asdict(profile),
            "identity_key": key, "duration": round(said.duration, 4), "sample_rate": said.sample_rate,
            "speech": {"backend": said.backend, **said.settings}, "face": {"backend": shown.backend, **shown.settings},
            "fps": shown.fps, "frames": shown.frames, "words": [[w, round(t, 3)] for w, t in said.words],
            "mouth": shown.mouth})
    return AvatarResult(out, out / "speech.wav", out / "avatar.mp4", out / "reference.png", emotion, profile,
                        said.duration, shown.frames)


def frame_png(video: Path, index: int, png: Path) -> Path:
    """Save frame ``index`` of ``video`` as a PNG (for looking at a render)."""
    from elmd.heads.avatar.mux import read_video

    frames = read_video(video)
    Image.fromarray(np.asarray(frames[min(index, len(frames) - 1)])).save(png)
    return png
