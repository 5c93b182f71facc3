"""Sticker metrics (issue 14, "Metrics"); pure functions of labels, ids and similarity scores.

* :func:`sticker_frequency` - **Freq**: the share of replies that carry a sticker (PEGS,
  ``evaluates/mm_metrics/mm_relevance.py``, ``get_sticker_freq``: rows whose ``pred_image`` is non-empty).
* :func:`sticker_emotion_accuracy` - share of replies *with a sticker* whose sticker's emotion equals
  the reference reply's emotion; :func:`prior_emotion_accuracy` is the same expectation for a sticker
  drawn at random from the library (the baseline it must beat).
* :func:`recall_at_k` - gold-sticker recall@k: share of replies with a gold sticker whose gold id is
  among the first k stickers returned.
* :func:`mm_relevance` / :func:`mm_relevance_summary` - **MMr** and **f-MMr**, following PEGS's
  ``get_relevance_score`` (same file). For a reply with text t and optional sticker v against the
  reference (t', optional v'), with ``sim(a, b) = logit_scale * cos(a, b)`` (CLIP's scale, 100) and a
  similarity of 0 whenever one side has no sticker::

      total = sim(t, t') + sim(v, v')
      precision = total / 2 if the reply has a sticker else total
      recall    = total / 2 if the reference has a sticker else total
      f         = 2 * precision * recall / (precision + recall)                 -> f-MMr (PEGS "f1_mm")
      MMr       = (total + sim(t, v') + sim(v, t')) / n,  n = 4 with both stickers,
                  2 with one, 1 with none                                       -> MMr (PEGS "optim_mm")

  Both are averaged over replies. f-MMr is the F1 of the precision- and recall-style relevance, so
  it accounts for whether a sticker was sent at all (a reply without a sticker keeps the full text
  similarity as precision while the reference's recall halves). The names MMr / f-MMr are mapped to
  PEGS's ``optim_mm`` / ``f1_mm`` from the released code; the paper's text was not available here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def sticker_frequency(has_sticker: Sequence[bool]) -> float:
    """Freq: share of replies with a sticker (0.0 for no replies)."""
    return float(np.mean([bool(h) for h in has_sticker])) if len(has_sticker) else 0.0


def sticker_emotion_accuracy(sticker_emotions: Sequence[str | None], reference_emotions: Sequence[str | None]) -> float:
    """Among replies with a sticker (emotion not None) and a labelled reference, the share whose
    sticker emotion equals the reference reply's emotion; NaN when there is no such reply."""
    pairs = [(s, r) for s, r in zip(sticker_emotions, reference_emotions, strict=True) if s is not None and r is not None]
    return float(np.mean([s == r for s, r in pairs])) if pairs else float("nan")


def prior_emotion_accuracy(library_emotions: Sequence[str], reference_emotions: Sequence[str | None]) -> float:
    """Expected emotion accuracy of a sticker drawn uniformly from the library: sum_e p_lib(e) * p_ref(e)."""
    refs = [r for r in reference_emotions if r is not None]
    if not refs or not library_emotions:
        return float("nan")
    lib, ref = Counter(library_emotions), Counter(refs)
    return float(sum(lib[e] / len(library_emotions) * ref[e] / len(refs) for e in ref))


def recall_at_k(returned: Sequence[Sequence[str]], gold: Sequence[str | None], k: int) -> float:
    """Share of replies with a gold sticker (not None) whose gold id is in ``returned[i][:k]``; NaN if none has one."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    hits = [g in list(r)[:k] for r, g in zip(returned, gold, strict=True) if g is not None]
    return float(np.mean(hits)) if hits else float("nan")


@dataclass
class MMRelevance:
    """PEGS's multimodal relevance of one reply (see the module docstring)."""

    precision: float
    recall: float
    f: float
    """F1 of precision and recall: one reply's f-MMr."""
    mmr: float
    """The all-pairs relevance: one reply's MMr."""


def mm_relevance(tt: float, vv: float = 0.0, tv: float = 0.0, vt: float = 0.0, *, reply_has_sticker: bool,
                 reference_has_sticker: bool) -> MMRelevance:
    """One reply's relevance from its (already scaled) similarities: ``tt`` reply text vs reference text,
    ``vv`` reply sticker vs reference sticker, ``tv`` reply text vs reference sticker, ``vt`` reply sticker
    vs reference text. Terms that involve a missing sticker are treated as 0, as PEGS does."""
    vv = vv if reply_has_sticker and reference_has_sticker else 0.0
    tv = tv if reference_has_sticker else 0.0
    vt = vt if reply_has_sticker else 0.0
    total = tt + vv
    precision = total / 2 if reply_has_sticker else total
    recall = total / 2 if reference_has_sticker else total
    f = 2 * precision * recall / (precision + recall) if precision + recall != 0 else 0.0
    n = 4 if reply_has_sticker and reference_has_sticker else 2 if reply_has_sticker or reference_has_sticker else 1
    return MMRelevance(precision, recall, f, (total + tv + vt) / n)


def scaled_cosine(a: np.ndarray | None, b: np.ndarray | None, logit_scale: float = 100.0) -> float:
    """``logit_scale * cos(a, b)``; 0 when either is None (CLIP's logit scale is 100)."""
    if a is None or b is None:
        return 0.0
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(logit_scale * a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mm_relevance_vectors(reply_text, reply_sticker, ref_text, ref_sticker, logit_scale: float = 100.0) -> MMRelevance:
    """:func:`mm_relevance` from embeddings in one text-image space (CLIP's: text tower for the texts, image
    tower for the stickers); a sticker vector of None means the reply / reference has no sticker."""
    sim = lambda a, b: scaled_cosine(a, b, logit_scale)  # noqa: E731
    return mm_relevance(sim(reply_text, ref_text), sim(reply_sticker, ref_sticker), sim(reply_text, ref_sticker),
                        sim(reply_sticker, ref_text), reply_has_sticker=reply_sticker is not None,
                        reference_has_sticker=ref_sticker is not None)


@dataclass
class MMRSummary:
    """Averages over replies."""

    freq: float
    mmr: float
    f_mmr: float
    precision: float
    recall: float
    n: int


def mm_relevance_summary(items: Sequence[MMRelevance], has_sticker: Sequence[bool]) -> MMRSummary:
    """Freq, MMr, f-MMr (and the precision / recall parts) averaged over ``items``."""
    if not items:
        return MMRSummary(0.0, float("nan"), float("nan"), float("nan"), float("nan"), 0)
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    return MMRSummary(sticker_frequency(has_sticker), mean([i.mmr for i in items]), mean([i.f for i in items]),
                      mean([i.precision for i in items]), mean([i.recall for i in items]), len(items))
