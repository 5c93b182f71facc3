"""StickerConv (Zhang et al., ACL 2024) into canonical dialogues whose replies carry a ``sticker``.

A StickerConv session (the JSON the authors' Agent4SC writes, ``agent/manager.py``; a JSON list of
sessions or one per JSONL line)::

    {"conversation": [{"turn": 0, "user_message": "...", "user_sticker": null | STICKER,
                       "system_message": "...", "system_sticker": null | STICKER}, ...],
     "user_persona": "...", "user_status": "..."}
    STICKER = {"image": ".../SER_Dataset/Images/<set>/<file>.jpg", "description": "...",
               "emotion": "...", "recommendation": "...", "origin_anno"?: "Happiness"}

becomes one canonical dialogue (:mod:`elmd.data.schema`) with turns ``用户`` / ``助手``; a turn with a
sticker gets ``"sticker": {id, image, emotion, description, recommendation}`` where ``image`` is the
path below SER30K's ``Images/`` folder and ``id`` that path without its extension. StickerConv has
no per-utterance emotion labels, so a reply's ``emotion`` is its sticker's (mapped from SER30K's
names by :data:`SER30K_TO_M3ED`; ``origin_anno`` wins over ``emotion``, which in the released data
is often a sentence); replies without a sticker get ``default_emotion`` (None: context only) and
user turns stay unlabelled unless ``label_user`` is set. The ``background`` is ``user_status``.

:func:`read_sticker_descriptions` reads ``sticker_descriptions/<Emotion>_example.txt`` (one SER30K
sticker per line: ``emotion: <label>, emotion describe: <text>``) as description data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from elmd.errors import DataError
from elmd.io import iter_jsonl

SER30K_TO_M3ED = {"happiness": "happy", "surprise": "surprise", "sadness": "sad", "disgust": "disgust",
                  "anger": "anger", "fear": "fear", "neutral": "neutral",
                  "happy": "happy", "sad": "sad"}
"""SER30K / StickerConv emotion names (lower-cased) and M3ED's own ids -> M3ED label ids (the same seven)."""
USER, SYSTEM = "用户", "助手"
_FIX = "give each session a 'conversation' list of {user_message, system_message, user_sticker, system_sticker}"


def map_emotion(value, path, where: str, line: int | None = None, strict: bool = True) -> str | None:
    """The M3ED id of a SER30K emotion name (case-insensitive); None for a sentence (not a label).
    A single unknown word raises :class:`DataError` when ``strict``."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    label = SER30K_TO_M3ED.get(text.lower())
    if label is None and strict and not re.search(r"\s", text):
        raise DataError(path, f"unknown sticker emotion '{text}' in {where}",
                        f"use one of {', '.join(sorted(k.capitalize() for k in SER30K_TO_M3ED))}", line)
    return label


def sticker_field(raw: dict, path, where: str, line: int | None = None) -> dict:
    """The canonical ``sticker`` dict of a StickerConv sticker object."""
    if not isinstance(raw, dict) or not isinstance(raw.get("image"), str) or not raw["image"].strip():
        raise DataError(path, f"{where}: sticker without an 'image' path", "give every sticker {image, description, emotion}", line)
    image = raw["image"].replace("\\", "/")
    image = image.split("/Images/", 1)[1] if "/Images/" in image else image
    emotion = map_emotion(raw.get("origin_anno"), path, where, line) or map_emotion(raw.get("emotion"), path, where, line)
    return {"id": str(Path(image).with_suffix("")), "image": image, "emotion": emotion,
            "description": str(raw.get("description") or ""), "recommendation": str(raw.get("recommendation") or "")}


def _sessions(path: Path):
    """(line or None, session) pairs of a JSON list file or a JSONL file."""
    if not path.is_file():
        raise DataError(path, "StickerConv file not found", "pass the conversation JSON (e.g. train.json) with --input")
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        head = f.read(4096).lstrip()[:1]
    if head == "[":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON ({e.msg} at line {e.lineno})", "fix the file", e.lineno) from None
        for s in data:
            yield None, s
    else:
        yield from iter_jsonl(path, "StickerConv file", _FIX)


def read_stickerconv(path: str | Path, default_emotion: str | None = None, label_user: bool = False,
                     prefix: str = "sc") -> list[dict]:
    """Canonical dialogue rows (dicts, with ``sticker`` on turns that have one) of a StickerConv file."""
    path, rows = Path(path), []
    for n, (line, session) in enumerate(_sessions(path)):
        where = f"session {n}"
        if not isinstance(session, dict) or not isinstance(session.get("conversation"), list) or not session["conversation"]:
            raise DataError(path, f"{where} has no 'conversation' list", _FIX, line)
        turns = []
        for k, turn in enumerate(session["conversation"]):
            if not isinstance(turn, dict):
                raise DataError(path, f"{where} turn {k} is not an object", _FIX, line)
            for side, speaker in (("user", USER), ("system", SYSTEM)):
                text = turn.get(f"{side}_message")
                if not isinstance(text, str) or not text.strip():
                    continue
                out = {"speaker": speaker, "text": text.strip(), "emotion": None}
                if turn.get(f"{side}_sticker"):
                    out["sticker"] = sticker_field(turn[f"{side}_sticker"], path, f"{where} turn {k} {side}_sticker", line)
                if side == "system" or label_user:
                    out["emotion"] = (out.get("sticker") or {}).get("emotion") or (default_emotion if side == "system" else None)
                turns.append(out)
        if not turns:
            raise DataError(path, f"{where} has no non-empty messages", "drop the session", line)
        rows.append({"dialogue_id": f"{prefix}{n:05d}", "series": "stickerconv",
                     "background": str(session.get("user_status") or ""), "turns": turns})
    if not rows:
        raise DataError(path, "contains no sessions", _FIX)
    return rows


def stickers_of(rows: list[dict], speakers: tuple[str, ...] = (USER, SYSTEM)) -> list[dict]:
    """Unique stickers (first occurrence wins) of canonical rows as ``stickers.jsonl`` rows; stickers
    without a known emotion are left out (a library needs one)."""
    seen, out = set(), []
    for row in rows:
        for t in row["turns"]:
            s = t.get("sticker")
            if s and t["speaker"] in speakers and s["emotion"] and s["id"] not in seen:
                seen.add(s["id"])
                out.append({k: s[k] for k in ("id", "image", "emotion", "description", "recommendation")})
    return out


@dataclass
class StickerDescription:
    """One line of ``sticker_descriptions/<Emotion>_example.txt``."""

    emotion: str
    """M3ED label id."""
    text: str
    source: str
    line: int


_LINE = re.compile(r"^emotion:\s*([^,]+),\s*emotion describe:\s*(.*)$", re.S)


def read_sticker_descriptions(folder: str | Path) -> list[StickerDescription]:
    """Every description of a ``sticker_descriptions`` folder (files sorted by name, lines in order)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise DataError(folder, "no sticker description files (*.txt)", "point at StickerConv's sticker_descriptions/ folder")
    out = []
    for f in files:
        for lineno, raw in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            m = _LINE.match(raw.strip())
            if not m:
                raise DataError(f, "expected 'emotion: <label>, emotion describe: <text>'", "fix or delete the line", lineno)
            emotion = map_emotion(m.group(1), f, "the line", lineno, strict=True)
            if emotion is None:
                raise DataError(f, f"unknown emotion '{m.group(1).strip()}'", "use a SER30K label such as Happiness", lineno)
            out.append(StickerDescription(emotion, m.group(2).strip(), f.name, lineno))
    return out
