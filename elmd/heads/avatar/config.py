"""Configuration of the avatar head (issue 15; EmpathyEar-style speech + talking face of the reply).

One dataclass, section ``avatar`` of the run config. Every value is checked when it is set (by the
constructor, a YAML file or a ``--set avatar.key=value`` override), so a bad value stops with one
line naming the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from elmd.data.meta_response import AGES, GENDERS  # noqa: F401  (one definition: the meta-response's)

SPEECH_BACKENDS = ("espeak", "chattts", "cosyvoice")
FACE_BACKENDS = ("cartoon", "sadtalker", "dreamtalk")


@dataclass
class AvatarConfig:
    speech: str = "espeak"
    """Speech backend: 'espeak' (eSpeak NG Mandarin `cmn`, offline, the default), 'chattts' or
    'cosyvoice' (neural, loaded from the local folder ``speech_path``)."""
    speech_path: str = ""
    """Local checkpoint folder of a neural speech backend (never downloaded)."""
    voice_bank: str = ""
    """Folder of reference voices (``voices.json`` + wav files) for backends that clone a voice."""
    face: str = "cartoon"
    """Face backend: 'cartoon' (the project's face drawing animated at ``fps``, offline, the default),
    'sadtalker' or 'dreamtalk' (a local checkout run as a subprocess)."""
    face_repo: str = ""
    """Local checkout of the talking-face model (the folder holding its inference script)."""
    face_checkpoints: str = ""
    """Checkpoint folder of the talking-face model ('' = ``face_repo``/checkpoints)."""
    face_python: str = "python"
    """Python interpreter that runs the talking-face checkout (its own environment)."""
    face_bank: str = ""
    """Folder of reference faces (``faces.json`` + images by gender / age); '' = drawn identities."""
    face_timeout_s: int = 1800
    """Seconds a talking-face subprocess may run before it is stopped."""
    fps: int = 25
    """Video frame rate (frames per second)."""
    size: int = 256
    """Video width = height in pixels (a multiple of 16)."""
    gender: str = "female"
    """Responder's gender when the reply does not say (documented rule in the package README)."""
    age: str = "young"
    """Responder's age group when the reply does not say: young, middle-aged or elderly."""
    mouth_gain: float = 1.0
    """How wide the mouth opens at the loudest speech frame (1 = the renderer's default)."""
    expression_intensity: float = 1.0
    """Strength of the emotion's expression on the face (0 = neutral face, 1 = the full preset)."""

    def __setattr__(self, name, value):
        _check(name, value)
        super().__setattr__(name, value)

    def validate(self, prefix: str = "avatar") -> None:
        """Check every field again (each is also checked when set: see the module docstring)."""
        for name, value in vars(self).items():
            _check(name, value)


_CHOICES = {"speech": SPEECH_BACKENDS, "face": FACE_BACKENDS, "gender": GENDERS, "age": AGES}
_RANGES = {"fps": (1, 60), "size": (64, 1024), "mouth_gain": (0.0, 3.0), "expression_intensity": (0.0, 1.5),
           "face_timeout_s": (1, 86400)}


def _check(name: str, value) -> None:
    from elmd.errors import ConfigError

    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"avatar.{name}={value!r} — choose one of {list(_CHOICES[name])}")
    if name in _RANGES:
        lo, hi = _RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ConfigError(f"avatar.{name}={value!r} — must be a number in [{lo}, {hi}]")
    if name == "size" and isinstance(value, int) and value % 16:
        raise ConfigError(f"avatar.size={value} — must be a multiple of 16 (video codecs need it), e.g. 256")
