"""Sticker scores of a prediction file (issue 14, "Metrics"): what `elmd evaluate` reports under
``report["heads"]["sticker"]`` when rows carry a ``sticker`` (``elmd generate --heads sticker``).

* **Freq**, **sticker emotion accuracy** (the sticker's emotion vs the reference reply's) and the
  library's **emotion prior** (a uniformly drawn library sticker; the baseline to beat), from
  :mod:`elmd.heads.sticker.metrics`;
* **recall@1 / @5** of the gold sticker when the generated data file (``data`` in the predictions'
  ``.meta.json``) has stickers on its replies (``elmd sticker attach`` / ``import-stickerconv``);
* **MMr / f-MMr** (PEGS's ``optim_mm`` / ``f1_mm``, :func:`~elmd.heads.sticker.metrics.mm_relevance`)
  against the reference reply and its gold sticker. PEGS embeds texts and stickers with CLIP's two
  towers; the run's image encoder here (ViT + Q-Former) has no text tower, so the four similarities
  are, each scaled by 100 as CLIP's: text-text = cosine of character uni+bigram counts; sticker-sticker
  = cosine of the library's image vectors; text-sticker = the text measure against the sticker's
  description. A generated sticker (no library id) has no image vector here: its sticker-sticker
  term is 0 and its description is the reply's emotion word.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from elmd.heads.sticker.metrics import (MMRelevance, mm_relevance, mm_relevance_summary, prior_emotion_accuracy,
                                        recall_at_k, sticker_emotion_accuracy)

SCALE = 100.0
"""CLIP's logit scale, as PEGS multiplies its cosines."""


def char_ngrams(text: str) -> Counter:
    """Character unigrams and bigrams of ``text`` (whitespace dropped)."""
    t = "".join((text or "").split())
    return Counter(list(t) + [t[i:i + 2] for i in range(len(t) - 1)])


def text_cosine(a: str, b: str) -> float:
    """Cosine of the character uni+bigram counts of two texts (0 when either is empty)."""
    x, y = char_ngrams(a), char_ngrams(b)
    dot = sum(v * y[k] for k, v in x.items() if k in y)
    nx, ny = math.sqrt(sum(v * v for v in x.values())), math.sqrt(sum(v * v for v in y.values()))
    return dot / (nx * ny) if nx and ny else 0.0


def _read_rows(pred_path: Path) -> list[dict]:
    with pred_path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _context(pred_path: Path):
    """(library or None, gold stickers {sample_id: sticker} or {}) from the predictions' ``.meta.json``."""
    meta_file = pred_path.with_name(pred_path.stem + ".meta.json")
    if not meta_file.is_file():
        return None, {}
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    library = None
    lib_path = ((meta.get("config") or {}).get("sticker") or {}).get("library")
    if lib_path and (Path(lib_path) / "table.jsonl").is_file():
        from elmd.heads.sticker.index import StickerLibrary

        library = StickerLibrary.load(lib_path)
    gold = {}
    if meta.get("data") and Path(meta["data"]).is_file():
        from elmd.heads.sticker.data import response_stickers

        gold = response_stickers(meta["data"])
    return library, gold


def _relevance(row: dict, gold: dict | None, library, labels) -> MMRelevance:
    """PEGS's relevance of one row against its reference (see the module docstring)."""
    import numpy as np

    st = row.get("sticker")
    vec = lambda sid: None if library is None or not library.positions([sid]) else library.vectors[library.positions([sid])[0]]  # noqa: E731
    desc = lambda s: (s.get("description") or "") if s else ""  # noqa: E731
    mine = None
    if st:
        mine = dict(st)
        if not mine.get("description"):
            hit = next((c for c in st.get("candidates", []) if c.get("id") == st.get("id")), None)
            mine["description"] = (hit or {}).get("description") or (labels.word(st["emotion"]) if st.get("emotion") in labels else "")
    vv = 0.0
    if mine and gold and mine.get("id"):
        a, b = vec(mine["id"]), vec(gold["id"])
        if a is not None and b is not None:
            vv = SCALE * float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return mm_relevance(SCALE * text_cosine(row.get("response") or "", row.get("reference") or ""), vv,
                        SCALE * text_cosine(row.get("response") or "", desc(gold)),
                        SCALE * text_cosine(desc(mine), row.get("reference") or ""),
                        reply_has_sticker=mine is not None, reference_has_sticker=gold is not None)


def sticker_metrics(pred_path: str | Path) -> dict | None:
    """The sticker scores of a prediction file (× 100 like the other metrics), or None when no row has a sticker."""
    from elmd.data.labels import LabelSet

    pred_path = Path(pred_path)
    rows = _read_rows(pred_path)
    if not any(r.get("sticker") for r in rows):
        return None
    library, gold = _context(pred_path)
    labels = LabelSet()
    has = [bool(r.get("sticker")) for r in rows]
    emotions = [(r.get("sticker") or {}).get("emotion") for r in rows]
    refs = [r.get("reference_emotion") for r in rows]
    out = {"Freq": 100 * sum(has) / len(rows),
           "Sticker-Emo-Acc": 100 * sticker_emotion_accuracy(emotions, refs),
           "Library-prior": 100 * prior_emotion_accuracy(library.emotions.tolist(), refs) if library is not None else None,
           "with_sticker": sum(has), "rows": len(rows)}
    golds = [gold.get(r.get("sample_id")) for r in rows]
    if any(golds):
        returned = [[c["id"] for c in (r.get("sticker") or {}).get("candidates", [])] or
                    ([r["sticker"]["id"]] if (r.get("sticker") or {}).get("id") else []) for r in rows]
        gold_ids = [g["id"] if g else None for g in golds]
        out["R@1"] = 100 * recall_at_k(returned, gold_ids, 1)
        out["R@5"] = 100 * recall_at_k(returned, gold_ids, 5)
        out["gold_stickers"] = sum(g is not None for g in golds)
    summary = mm_relevance_summary([_relevance(r, g, library, labels) for r, g in zip(rows, golds)], has)
    out["MMr"], out["f-MMr"] = summary.mmr, summary.f_mmr
    out["definitions"] = {
        "Freq": "share of rows with a sticker",
        "Sticker-Emo-Acc": "share of rows with a sticker whose sticker emotion equals the reference reply's emotion",
        "Library-prior": "the same for a sticker drawn uniformly from the library",
        "R@k": "share of rows whose reference reply has a gold sticker with the gold id among the first k stickers returned",
        "MMr / f-MMr": "PEGS optim_mm / f1_mm (elmd.heads.sticker.metrics); similarities x 100: text-text = char "
                       "uni+bigram cosine, sticker-sticker = library image-vector cosine, text-sticker = text measure vs the "
                       "sticker's description",
    }
    return out


def format_sticker_summary(m: dict) -> str:
    """One line for the terminal."""
    def f(key):
        v = m.get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
    keys = ["Freq", "Sticker-Emo-Acc", "Library-prior"] + (["R@1", "R@5"] if "R@1" in m else []) + ["MMr", "f-MMr"]
    return "sticker: " + "  ".join(f"{k} {f(k)}" for k in keys)
