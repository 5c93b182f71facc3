"""Stickers on dialogue turns: the gold sticker of each sample, and stickers for the bundled sample.

Canonical dialogue JSONL (:mod:`elmd.data.schema`) may carry ``"sticker": {id, image, emotion,
description, recommendation}`` on a turn (the StickerConv importer writes it; the dialogue reader
ignores the key). :func:`response_stickers` maps each sample id (``"<dialogue_id>#<i>"``, the
sample whose response is turn i + 1) to its response's sticker: the gold sticker of stage
`sticker` and of gold-sticker recall.

:func:`attach_stickers` gives a dialogue set stickers the way StickerConv's system side has them
(about 60% of replies, ``share``): each labelled reply is picked with probability ``share`` by a
hash of (seed, dialogue id, turn index), and gets a sticker *of its own emotion* from the library,
also picked by hash, so the choice is deterministic and independent of file order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from elmd.errors import DataError, ElmdError
from elmd.heads.sticker.library import Sticker
from elmd.io import iter_jsonl

FIELDS = ("id", "image", "emotion", "description", "recommendation")


def response_stickers(path: str | Path) -> dict[str, dict]:
    """``{sample_id: sticker}`` for every turn i + 1 that carries a sticker (``sample_id = f"{dialogue_id}#{i}"``)."""
    out = {}
    for lineno, row in iter_jsonl(path, "dialogue file", "check the path"):
        if not isinstance(row, dict) or not isinstance(row.get("turns"), list):
            raise DataError(path, "expected a dialogue object with 'turns'", "see data/README.md", lineno)
        for i, turn in enumerate(row["turns"][1:]):
            s = turn.get("sticker") if isinstance(turn, dict) else None
            if s is not None:
                if not isinstance(s, dict) or not s.get("id"):
                    raise DataError(path, f"turn {i + 1}: 'sticker' needs at least an 'id'", "write {id, image, emotion, ...}", lineno)
                out[f"{row['dialogue_id']}#{i}"] = s
    return out


def _unit(*parts) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") / 2.0**64


def attach_stickers(rows: list[dict], stickers: list[Sticker], share: float = 0.6, seed: int = 0) -> tuple[list[dict], dict]:
    """Copies of canonical dialogue ``rows`` whose labelled replies (a turn after another speaker's, with
    an emotion) get a sticker of their emotion with probability ``share``; returns (rows, counts)."""
    if not 0.0 <= share <= 1.0:
        raise ElmdError(f"share must be in [0, 1], got {share}")
    by_emotion: dict[str, list[Sticker]] = defaultdict(list)
    for s in stickers:
        by_emotion[s.emotion].append(s)
    counts = {"replies": 0, "with_sticker": 0, "no_sticker_of_emotion": 0}
    out = []
    for row in rows:
        turns = []
        for i, t in enumerate(row["turns"]):
            t = {k: v for k, v in t.items() if k != "sticker"}
            if i > 0 and t.get("emotion") and t.get("speaker") != row["turns"][i - 1].get("speaker"):
                counts["replies"] += 1
                pool = by_emotion.get(t["emotion"], [])
                if _unit(seed, "share", row["dialogue_id"], i) < share:
                    if pool:
                        s = pool[int(_unit(seed, "pick", row["dialogue_id"], i) * len(pool))]
                        t["sticker"] = {f: getattr(s, f) for f in FIELDS}
                        counts["with_sticker"] += 1
                    else:
                        counts["no_sticker_of_emotion"] += 1
            turns.append(t)
        out.append({**row, "turns": turns})
    return out, counts


def attach_stickers_file(data: str | Path, meta: str | Path, out: str | Path, share: float = 0.6, seed: int = 0,
                         overwrite: bool = False) -> dict:
    """`elmd sticker attach`: :func:`attach_stickers` from a dialogue JSONL and a stickers.jsonl to ``out``."""
    from elmd.heads.sticker.library import read_stickers
    from elmd.io import atomic_write_jsonl

    if Path(out).exists() and not overwrite:
        raise ElmdError(f"{out} already exists — pass --overwrite to replace it")
    rows = [row for _, row in iter_jsonl(data, "dialogue file", "check the path")]
    new, counts = attach_stickers(rows, read_stickers(meta), share, seed)
    atomic_write_jsonl(out, new)
    return counts
