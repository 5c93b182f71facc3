"""Reading and validating the canonical dialogue JSONL (format in :mod:`elmd.data.schema`).

UTF-8 (BOM optional) through :func:`elmd.io.iter_jsonl`; another encoding with ``encoding=``
(`elmd data prepare --encoding gbk`), decoded by :mod:`elmd.data.encoding`.
"""

from __future__ import annotations

import json
from pathlib import Path

from elmd.data.encoding import check_encoding, read_text
from elmd.data.labels import LabelSet
from elmd.data.schema import AGES, GENDERS, Dialogue, Sample, Turn, build_samples
from elmd.errors import DataError
from elmd.io import iter_jsonl

_FIX_LABEL = "use one of the label set's ids, or declare another set with data.labels=[...]"


def _lines(path: Path, encoding: str | None):
    """``(line number, value)`` of the file's lines: UTF-8 via iter_jsonl, else decoded first."""
    fix = "check the path, or create it with `elmd data prepare`"
    if check_encoding(encoding) is None:
        try:
            yield from iter_jsonl(path, "file", fix)
        except DataError as e:
            if e.problem.startswith("not UTF-8"):
                read_text(path)  # raises the error naming the byte offset, the likely encoding and iconv
            raise
        return
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "is a folder, expected a .jsonl file", fix)
    for lineno, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        if line.strip():
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})", "fix or delete the line", lineno) from None


def read_dialogues(path: str | Path, labels: LabelSet | None = None, resolve_videos: bool = True,
                   encoding: str | None = None) -> list[Dialogue]:
    """Read one dialogue per line; every problem raises :class:`DataError` naming file and line.

    Relative ``video`` paths are made relative to the current folder's view of the file
    (i.e. joined to the JSONL's folder) when ``resolve_videos`` is true.
    """
    path = Path(path)
    labels = labels or LabelSet()
    dialogues, seen = [], {}
    for lineno, raw in _lines(path, encoding):
        d = parse_dialogue(raw, labels, path, lineno)
        if d.dialogue_id in seen:
            raise DataError(path, f"dialogue_id '{d.dialogue_id}' repeats line {seen[d.dialogue_id]}", "give every dialogue a unique id", lineno)
        seen[d.dialogue_id] = lineno
        if resolve_videos:
            for t in d.turns:
                if t.video and not Path(t.video).is_absolute():
                    t.video = str(path.parent / t.video)
        dialogues.append(d)
    if not dialogues:
        raise DataError(path, "contains no dialogues", "check that the file is the canonical JSONL (one dialogue per line)")
    return dialogues


def parse_dialogue(raw, labels: LabelSet, path, lineno: int) -> Dialogue:
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object per line", "see the format in data/README.md", lineno)
    for key in ("dialogue_id", "turns"):
        if key not in raw:
            raise DataError(path, f"missing field '{key}'", "every line needs dialogue_id and turns", lineno)
    if not isinstance(raw["turns"], list) or not raw["turns"]:
        raise DataError(path, "'turns' must be a non-empty list", "drop empty dialogues", lineno)
    turns = [_parse_turn(t, k, labels, path, lineno) for k, t in enumerate(raw["turns"])]
    return Dialogue(
        dialogue_id=str(raw["dialogue_id"]),
        series=str(raw.get("series") or ""),
        background=str(raw.get("background") or ""),
        turns=turns,
    )


def _parse_turn(t, k: int, labels: LabelSet, path, lineno: int) -> Turn:
    if not isinstance(t, dict):
        raise DataError(path, f"turn {k} is not an object", "write turns as {speaker, text, emotion}", lineno)
    text = t.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, f"turn {k} has empty text", "remove the turn or fill in its text", lineno)
    emotion = t.get("emotion")
    if emotion is not None and emotion not in labels:
        raise DataError(path, f"unknown emotion label '{emotion}' in turn {k} (known: {', '.join(labels.ids)})", _FIX_LABEL, lineno)
    video = t.get("video")
    if video is not None and not isinstance(video, str):
        raise DataError(path, f"turn {k}: 'video' must be a path string", "write a relative or absolute path", lineno)
    for key in ("act", "scene"):
        if t.get(key) is not None and not isinstance(t[key], str):
            raise DataError(path, f"turn {k}: '{key}' must be a string or null, got {t[key]!r}", "see data/README.md", lineno)
    return Turn(speaker=str(t.get("speaker") or ""), text=text.strip(), emotion=emotion, video=video or None,
                profile=_parse_profile(t.get("profile"), k, path, lineno), act=t.get("act") or None,
                scene=t.get("scene") or None)


def _parse_profile(raw, k: int, path, lineno: int) -> dict | None:
    """A turn's optional ``profile``: ``{"gender": GENDERS, "age": AGES}`` (a missing key = unknown)."""
    if raw is None:
        return None
    fix = f"write profile as {{\"gender\": {'|'.join(GENDERS)}, \"age\": {'|'.join(AGES)}}}"
    if not isinstance(raw, dict) or set(raw) - {"gender", "age"}:
        raise DataError(path, f"turn {k}: bad profile {raw!r}", fix, lineno)
    gender, age = raw.get("gender", "unknown"), raw.get("age", "unknown")
    if gender not in GENDERS or age not in AGES:
        raise DataError(path, f"turn {k}: bad profile {raw!r}", fix, lineno)
    return {"gender": gender, "age": age}


def read_samples(path: str | Path, labels: LabelSet | None = None, max_samples: int = 0) -> list[Sample]:
    """Dialogues of ``path`` turned into samples (at most ``max_samples`` when > 0)."""
    samples = build_samples(read_dialogues(path, labels))
    return samples[:max_samples] if max_samples > 0 else samples
