"""Emotional Mandarin speech of a reply (issue 15 item 2): the backend interface and eSpeak NG.

:class:`SpeechBackend` turns ``(text, emotion, profile)`` into a wav file and word timings.
The default, :class:`EspeakBackend`, drives libespeak-ng through ctypes with the Mandarin voice
``cmn``; the library and its dictionaries come from PyPI's ``espeakng-loader`` wheel (no root, no
download at run time), or from a system ``libespeak-ng`` (Debian's ``espeak-ng``) when the wheel is
absent. Prosody per emotion (eSpeak's parameters: rate in words per minute, pitch and pitch range
0-100, volume 0-200; defaults 175 / 50 / 50 / 100):

=========  ====  =====  =====  ======  ===========================================
emotion    rate  pitch  range  volume  intent
=========  ====  =====  =====  ======  ===========================================
neutral     165     50     45     100  the voice's rest
happy       190     68     85     120  higher, wider, a little faster and louder
surprise    180     75     95     120  highest and widest
anger       200     60     80     160  fast, loud, wide
sad         130     35     15      80  slow, low, flat, soft
fear        185     66     55      90  fast and high but narrow
disgust     140     40     35     105  slow and low
=========  ====  =====  =====  ======  ===========================================

Voice variant by profile (eSpeak's ``voices/!v``): female young ``f5``, middle-aged ``f2``, elderly
``grandma``; male young ``m3``, middle-aged ``m4``, elderly ``grandpa``; the rate is multiplied by
1.0 / 0.95 / 0.85 for young / middle-aged / elderly. Neural backends: :mod:`.neural`.
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from elmd.errors import ElmdError
from elmd.heads.avatar.meta import Profile


@dataclass(frozen=True)
class Prosody:
    rate: int
    """Words per minute (eSpeak counts a Mandarin syllable as a word)."""
    pitch: int
    """Base pitch, 0-100."""
    range: int
    """Pitch range, 0-100 (0 = monotone)."""
    volume: int
    """Amplitude, 0-200."""


PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(165, 50, 45, 100), "happy": Prosody(190, 68, 85, 120), "surprise": Prosody(180, 75, 95, 120),
    "anger": Prosody(200, 60, 80, 160), "sad": Prosody(130, 35, 15, 80), "fear": Prosody(185, 66, 55, 90),
    "disgust": Prosody(140, 40, 35, 105),
}
"""The table in the module docstring (emotion -> eSpeak prosody)."""
VARIANTS = {("female", "young"): "f5", ("female", "middle-aged"): "f2", ("female", "elderly"): "grandma",
            ("male", "young"): "m3", ("male", "middle-aged"): "m4", ("male", "elderly"): "grandpa"}
AGE_RATE = {"young": 1.0, "middle-aged": 0.95, "elderly": 0.85}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class SpeechResult:
    """A synthesised reply."""

    wav: Path
    """16-bit mono wav file."""
    sample_rate: int
    duration: float
    """Seconds of audio."""
    words: list[tuple[str, float]] = field(default_factory=list)
    """(text of the word / syllable, start in seconds), in order; [] when the backend gives none."""
    backend: str = ""
    settings: dict = field(default_factory=dict)
    """What the backend used (voice, prosody), for meta.json."""


class SpeechBackend(Protocol):
    name: str

    def synthesize(self, text: str, emotion: str, profile: Profile, wav: Path) -> SpeechResult:
        """Write the speech of ``text`` to ``wav`` and describe it."""


def check_reply_text(text: str) -> str:
    """``text`` without control / unassigned characters (a tiny model's stray bytes), stripped;
    one-line error when it is empty or has no Chinese character."""
    text = "".join(c for c in (text or "") if unicodedata.category(c)[0] != "C" and c != "\ufffd").strip()
    if not text:
        raise ElmdError("avatar: the reply text is empty — give the text to speak (--text)")
    if not _CJK.search(text):
        raise ElmdError(f"avatar: the reply text {text[:30]!r} has no Chinese character (only punctuation / Latin "
                        "letters) — the Mandarin voice needs Chinese text")
    return text


def syllables(text: str) -> int:
    """Chinese characters in ``text`` (one syllable each): the unit of the speaking rate."""
    return len(_CJK.findall(text))


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write int16 (or float in [-1, 1]) mono samples as a 16-bit wav."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        x = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(x.tobytes())
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples in [-1, 1], sample rate) of a 16-bit PCM wav."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ElmdError(f"{path}: not 16-bit PCM — convert it, e.g. ffmpeg -i IN -acodec pcm_s16le OUT.wav")
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        x = raw.reshape(-1, w.getnchannels()).mean(axis=1)
        return (x / 32768.0).astype(np.float32), w.getframerate()


class _Event(ctypes.Structure):  # espeak_EVENT (speak_lib.h)
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_int64)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_WORD, _SYNCHRONOUS, _CHARS_UTF8 = 1, 2, 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


def _open_library() -> tuple[ctypes.CDLL, bytes | None]:
    """libespeak-ng and its data folder: the espeakng-loader wheel first, then the system's."""
    try:
        import espeakng_loader

        return ctypes.CDLL(espeakng_loader.get_library_path()), espeakng_loader.get_data_path().encode()
    except (ImportError, OSError, RuntimeError):
        pass
    for name in ("libespeak-ng.so.1", "libespeak-ng.so"):
        try:
            return ctypes.CDLL(name), None
        except OSError:
            continue
    raise ElmdError("avatar: eSpeak NG not found — `pip install espeakng-loader` (bundled library and voices) "
                    "or `apt-get install espeak-ng`")


class _Espeak:
    """The process's one libespeak-ng instance (the library has global state: calls are locked)."""

    _lock = threading.Lock()
    _instance: "_Espeak | None" = None

    def __init__(self):
        lib, data = _open_library()
        self.sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise ElmdError("avatar: eSpeak NG failed to initialise (data folder missing?) — reinstall espeakng-loader")
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib, self.chunks, self.events = lib, [], []
        self._cb = _CALLBACK(self._collect)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> "_Espeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Espeak()
            return cls._instance

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _EVENT_WORD:
                self.events.append((events[i].text_position, events[i].length, events[i].audio_position))
            i += 1
        return 0

    def speak(self, text: str, voice: str, p: Prosody, rate_scale: float) -> tuple[np.ndarray, list]:
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ElmdError(f"avatar: eSpeak NG has no voice '{voice}' — reinstall espeakng-loader (data incomplete)")
            for param, value in ((_RATE, int(round(p.rate * rate_scale))), (_PITCH, p.pitch), (_RANGE, p.range),
                                 (_VOLUME, p.volume)):
                self.lib.espeak_SetParameter(param, value, 0)
            self.chunks, self.events = [], []
            data = text.encode("utf-8")
            if self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None) != 0:
                raise ElmdError("avatar: eSpeak NG could not synthesise the text")
            self.lib.espeak_Synchronize()
            audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
            return audio.astype(np.int16), list(self.events)


def _words(text: str, events: list[tuple[int, int, int]]) -> list[tuple[str, float]]:
    """(word, start s) from eSpeak's word events: a word runs from its event's character position
    (1-based) to the next event's, punctuation and spaces dropped."""
    starts = [(pos, ms) for pos, _, ms in events if pos >= 1]
    out = []
    for k, (pos, ms) in enumerate(starts):
        end = starts[k + 1][0] - 1 if k + 1 < len(starts) else len(text)
        word = "".join(c for c in text[pos - 1:end] if c.isalnum())
        if word:
            out.append((word, ms / 1000.0))
    return out


class EspeakBackend:
    """eSpeak NG Mandarin with the prosody table and voice variants of the module docstring."""

    name = "espeak"

    def __init__(self, prosody: dict[str, Prosody] | None = None):
        self.prosody = dict(PROSODY if prosody is None else prosody)

    def synthesize(self, text: str, emotion: str, profile: Profile, wav: Path) -> SpeechResult:
        text = check_reply_text(text)
        if emotion not in self.prosody:
            raise ElmdError(f"avatar: no prosody for emotion '{emotion}' — use one of {sorted(self.prosody)}")
        engine, p = _Espeak.get(), self.prosody[emotion]
        voice = f"cmn+{VARIANTS[(profile.gender, profile.age)]}"
        audio, events = engine.speak(text, voice, p, AGE_RATE[profile.age])
        words = _words(text, events)
        write_wav(Path(wav), audio, engine.sample_rate)
        settings = {"voice": voice, "rate": int(round(p.rate * AGE_RATE[profile.age])), "pitch": p.pitch,
                    "range": p.range, "volume": p.volume}
        return SpeechResult(Path(wav), engine.sample_rate, len(audio) / engine.sample_rate, words, self.name, settings)
