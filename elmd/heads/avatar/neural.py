"""Neural speech backends loaded from local folders, and the reference-voice bank (issue 15 item 2).

Both adapters import their package lazily and load only from ``avatar.speech_path`` with the hub
forced offline; a missing package or a folder without checkpoint files stops with one line
before anything is written. Neither package is a dependency of elmd (install them yourself).

* ``chattts``: ChatTTS's ``Chat().load(source="custom", custom_path=speech_path)``; the emotion
  becomes a refine-text prompt (laughter and pauses, :data:`CHATTTS_PROMPTS`); 24 kHz.
* ``cosyvoice``: CosyVoice 2 ``inference_instruct2`` with an instruction in Chinese naming the
  emotion (:data:`COSYVOICE_INSTRUCTIONS`) and a reference voice from :class:`VoiceBank`.

A voice bank is a folder with ``voices.json``: a list of ``{"wav": "f1.wav", "gender": "female",
"age": "young", "timbre": "bright", "text": "transcript of the wav"}``; :meth:`VoiceBank.pick`
chooses by gender, then age.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from elmd.errors import DataError, ElmdError
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.speech import SpeechResult, check_reply_text, write_wav

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".ckpt", ".onnx")
CHATTTS_PROMPTS = {"happy": "[oral_2][laugh_1][break_4]", "surprise": "[oral_3][laugh_0][break_3]",
                   "sad": "[oral_0][laugh_0][break_7]", "disgust": "[oral_1][laugh_0][break_5]",
                   "anger": "[oral_3][laugh_0][break_2]", "fear": "[oral_1][laugh_0][break_6]",
                   "neutral": "[oral_1][laugh_0][break_4]"}
COSYVOICE_INSTRUCTIONS = {"happy": "用开心愉快的语气说", "surprise": "用惊讶的语气说", "sad": "用悲伤低落的语气说",
                          "disgust": "用厌恶嫌弃的语气说", "anger": "用生气愤怒的语气说", "fear": "用害怕紧张的语气说",
                          "neutral": "用平静自然的语气说"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MODELSCOPE_OFFLINE": "1"}


def check_checkpoints(folder: str | Path, what: str, key: str) -> Path:
    """``folder`` when it exists and holds checkpoint files; else one line naming ``key``."""
    if not str(folder):
        raise ElmdError(f"avatar.{key} is empty — point it at a local {what} folder (nothing is downloaded)")
    path = Path(folder)
    if not path.is_dir():
        raise DataError(path, f"{what} folder not found", f"set avatar.{key} to a local folder")
    if not any(p.suffix in CHECKPOINT_SUFFIXES for p in path.rglob("*") if p.is_file()):
        raise DataError(path, f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) in the {what} folder",
                        f"put the downloaded checkpoints there or fix avatar.{key}")
    return path


def _import(module: str, pip_name: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ElmdError(f"avatar: the speech backend needs the '{pip_name}' package ({e}) — install it into this "
                        "environment, or use avatar.speech=espeak") from None


class VoiceBank:
    """Reference voices by gender / age / timbre (module docstring)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / "voices.json"
        if not index.is_file():
            raise DataError(index, "voice bank index not found",
                            'write voices.json: [{"wav": "f.wav", "gender": "female", "age": "young", "text": "..."}]')
        try:
            self.entries = json.loads(index.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(index, f"malformed JSON ({e.msg})", "fix the file") from None
        if not isinstance(self.entries, list) or not self.entries:
            raise DataError(index, "expected a non-empty list of voices", "add at least one entry")

    def pick(self, profile: Profile, timbre: str = "") -> dict:
        """The entry matching gender, then age, then timbre; its ``wav`` made absolute and checked."""
        entry = max(self.entries, key=lambda e: 4 * (e.get("gender") == profile.gender) + 2 * (e.get("age") == profile.age)
                    + (bool(timbre) and e.get("timbre") == timbre))
        wav = self.folder / str(entry.get("wav", ""))
        if not wav.is_file():
            raise DataError(wav, "reference voice not found", f"add the wav or fix its entry in {self.folder / 'voices.json'}")
        return {**entry, "wav": wav}


class ChatTTSBackend:
    name = "chattts"

    def __init__(self, path: str | Path):
        self.path = check_checkpoints(path, "ChatTTS", "speech_path")
        os.environ.update(OFFLINE_ENV)
        chattts = _import("ChatTTS", "ChatTTS")
        self.chat = chattts.Chat()
        if not self.chat.load(source="custom", custom_path=str(self.path), compile=False):
            raise DataError(self.path, "ChatTTS could not load this folder", "check that it is a complete ChatTTS asset folder")
        self.module = chattts

    def synthesize(self, text: str, emotion: str, profile: Profile, wav: Path) -> SpeechResult:
        text = check_reply_text(text)
        refine = self.module.Chat.RefineTextParams(prompt=CHATTTS_PROMPTS.get(emotion, CHATTTS_PROMPTS["neutral"]))
        audio = np.asarray(self.chat.infer([text], params_refine_text=refine)[0], dtype=np.float32).reshape(-1)
        write_wav(Path(wav), audio, 24000)
        return SpeechResult(Path(wav), 24000, len(audio) / 24000, [], self.name, {"prompt": refine.prompt})


class CosyVoiceBackend:
    name = "cosyvoice"

    def __init__(self, path: str | Path, voice_bank: str | Path):
        self.path = check_checkpoints(path, "CosyVoice", "speech_path")
        if not str(voice_bank):
            raise ElmdError("avatar.voice_bank is empty — CosyVoice clones a reference voice: give a voice bank folder")
        self.bank = VoiceBank(voice_bank)
        os.environ.update(OFFLINE_ENV)
        self.model = _import("cosyvoice.cli.cosyvoice", "cosyvoice").CosyVoice2(str(self.path))
        self.load_wav = _import("cosyvoice.utils.file_utils", "cosyvoice").load_wav

    def synthesize(self, text: str, emotion: str, profile: Profile, wav: Path) -> SpeechResult:
        text = check_reply_text(text)
        voice = self.bank.pick(profile)
        prompt = self.load_wav(str(voice["wav"]), 16000)
        instruction = COSYVOICE_INSTRUCTIONS.get(emotion, COSYVOICE_INSTRUCTIONS["neutral"])
        parts = [np.asarray(o["tts_speech"]).reshape(-1) for o in self.model.inference_instruct2(text, instruction, prompt)]
        sr = int(self.model.sample_rate)
        audio = np.concatenate(parts).astype(np.float32)
        write_wav(Path(wav), audio, sr)
        return SpeechResult(Path(wav), sr, len(audio) / sr, [], self.name, {"instruction": instruction, "voice": str(voice["wav"])})


def build_neural_speech(cfg):
    if cfg.speech == "chattts":
        return ChatTTSBackend(cfg.speech_path)
    if cfg.speech == "cosyvoice":
        return CosyVoiceBackend(cfg.speech_path, cfg.voice_bank)
    raise ElmdError(f"avatar.speech={cfg.speech!r} is not a neural backend")
