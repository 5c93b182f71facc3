"""The one prediction-row schema: what `elmd generate` (ELMD and the baselines) writes and
`elmd evaluate` reads, derived from a :class:`~elmd.inference.reply.Reply`.

One JSON object per line::

    {"sample_id": "d1#3", "emotion_pred": "happy" | null, "response": "...", "reference": "...",
     "reference_emotion": "happy", "demonstration": "...", "generated": "...", "new_tokens": 9,
     "sticker": {...}, "avatar": {...}}          (head fields only when the heads ran)

``emotion_pred`` is null when no label was decided / parsed; ``response`` may be "" (or null in
files of other tools). ``generated`` is the raw decoded text, ``new_tokens`` its token count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elmd.errors import DataError
from elmd.inference.reply import Reply
from elmd.io import iter_jsonl

_FIX = "each line must be a JSON object with string 'response' and 'reference' (as `elmd generate` writes)"
CORE = ("sample_id", "emotion_pred", "response", "reference", "reference_emotion", "demonstration", "generated",
        "new_tokens")
"""Keys of a row other than the heads' fields."""


@dataclass
class Prediction:
    """One line of a prediction file."""

    sample_id: str | None
    response: str
    reference: str
    emotion_pred: str | None = None
    reference_emotion: str | None = None
    demonstration: str = ""
    generated: str | None = None
    new_tokens: int | None = None
    extras: dict = field(default_factory=dict)
    """The heads' fields (``sticker``, ``avatar`` ...)."""

    def to_row(self) -> dict:
        row = {"sample_id": self.sample_id, "emotion_pred": self.emotion_pred, "response": self.response,
               "reference": self.reference, "reference_emotion": self.reference_emotion,
               "demonstration": self.demonstration}
        if self.generated is not None:
            row["generated"] = self.generated
        if self.new_tokens is not None:
            row["new_tokens"] = self.new_tokens
        return {**row, **self.extras}


def prediction_of(sample, reply: Reply) -> Prediction:
    """The row of ``reply`` answering data sample ``sample`` (its reference reply and emotion)."""
    return Prediction(sample.sample_id, reply.response, sample.response.text, reply.emotion, sample.target_emotion,
                      reply.demonstration, reply.raw_text, reply.new_tokens, dict(reply.extras))


def parse_row(raw, path: Path, lineno: int) -> Prediction:
    """A parsed row; anything malformed raises :class:`DataError` naming ``file:line``."""
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object per line", _FIX, lineno)
    if "reference" not in raw:
        raise DataError(path, "missing field 'reference'", _FIX, lineno)
    for key, nullable in (("response", True), ("reference", False), ("emotion_pred", True), ("reference_emotion", True)):
        value = raw.get(key)
        if not (isinstance(value, str) or (value is None and nullable)):
            raise DataError(path, f"field '{key}' must be a string{' or null' if nullable else ''}, got {value!r}", _FIX, lineno)
    sid = raw.get("sample_id")
    if sid is not None and not isinstance(sid, (str, int)):
        raise DataError(path, f"field 'sample_id' must be a string, got {sid!r}", _FIX, lineno)
    return Prediction(
        sample_id=None if sid is None else str(sid), response=raw.get("response") or "", reference=raw["reference"],
        emotion_pred=raw.get("emotion_pred"), reference_emotion=raw.get("reference_emotion"),
        demonstration=raw.get("demonstration") or "", generated=raw.get("generated"), new_tokens=raw.get("new_tokens"),
        extras={k: v for k, v in raw.items() if k not in CORE})


def read_predictions(path: str | Path, labels: tuple[str, ...] | None = None, source: str = "") -> list[Prediction]:
    """Parse a prediction JSONL; any problem raises :class:`DataError` naming ``file:line``: a row
    without ``response``, a repeated sample_id, and (with ``labels``, from ``source``) an
    ``emotion_pred`` / ``reference_emotion`` outside the label set."""
    path = Path(path)
    preds, seen = [], {}
    for lineno, raw in iter_jsonl(path, "prediction file", "check the path, or write it with `elmd generate`"):
        if isinstance(raw, dict) and "response" not in raw:
            raise DataError(path, "missing field 'response'", 'write "" for a sample with no reply (as `elmd generate` does)',
                            lineno)
        p = parse_row(raw, path, lineno)
        for key in ("emotion_pred", "reference_emotion") if labels else ():
            value = getattr(p, key)
            if value is not None and value not in labels:
                raise DataError(path, f"{key} '{value}' is not in the label set [{', '.join(labels)}] (from {source})",
                                "write one of those ids (null = unparsable), or give the set with --labels a,b,c", lineno)
        if p.sample_id is not None and p.sample_id in seen:
            raise DataError(path, f"sample_id '{p.sample_id}' repeats line {seen[p.sample_id]}",
                            "remove duplicate predictions (was the file appended twice?)", lineno)
        seen[p.sample_id] = lineno
        preds.append(p)
    if not preds:
        raise DataError(path, "contains no predictions", "generate them with `elmd generate`")
    return preds
