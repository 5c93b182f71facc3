"""Retrieval metrics (pure functions): emotion agreement@k and character-level F1 of r'."""

from __future__ import annotations

from collections import Counter


def emotion_agreement(gold: list[str | None], retrieved: list[list[str | None]], k: int) -> float:
    """Mean over queries with a gold emotion of the fraction of their top-k retrieved emotions equal
    to it (precision@k; a query with fewer than k hits counts the missing ones as disagreeing).
    Queries whose gold emotion is None are skipped; returns 0.0 when none is left."""
    scores = [sum(e == g for e in r[:k]) / k for g, r in zip(gold, retrieved) if g is not None]
    return sum(scores) / len(scores) if scores else 0.0


def char_f1(pred: str, gold: str) -> float:
    """F1 of the character multisets of ``pred`` and ``gold`` (whitespace ignored); 0 if either is empty."""
    p = Counter(c for c in pred if not c.isspace())
    g = Counter(c for c in gold if not c.isspace())
    common = sum((p & g).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def mean_char_f1(preds: list[str | None], golds: list[str]) -> float:
    """Mean :func:`char_f1` over pairs; a missing prediction (None, no hit) scores 0."""
    if not golds:
        return 0.0
    return sum(char_f1(p, g) if p is not None else 0.0 for p, g in zip(preds, golds)) / len(golds)


def macro_agreement(gold: list[str | None], top1: list[str | None]) -> float:
    """Per-class mean of agreement@1: for every gold emotion present, the fraction of its queries
    whose top hit carries it, averaged over those classes (a bias towards the majority emotion
    cannot pass for emotion matching). Queries without a gold emotion are skipped; 0.0 if none."""
    hit: dict[str, list[int]] = {}
    for g, r in zip(gold, top1):
        if g is not None:
            hit.setdefault(g, []).append(int(r == g))
    return sum(sum(v) / len(v) for v in hit.values()) / len(hit) if hit else 0.0


def accuracy_macro_f1(gold: list[str], pred: list[str]) -> tuple[float, float]:
    """Accuracy and macro-F1 (mean over the classes in ``gold`` or ``pred`` of per-class F1)."""
    if not gold:
        return 0.0, 0.0
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for c in sorted(set(gold) | set(pred)):
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        n_pred, n_gold = sum(p == c for p in pred), sum(g == c for g in gold)
        f1s.append(2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0)
    return acc, sum(f1s) / len(f1s)


def group_mean(values, groups=None) -> float:
    """Mean of ``values`` ignoring NaN; with ``groups`` (class ids) the mean of the per-group means
    (macro average over the groups present). 0.0 when nothing is left."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    if not ok.any():
        return 0.0
    if groups is None:
        return float(v[ok].mean())
    g = np.asarray(groups)[ok]
    sums, counts = np.bincount(g, weights=v[ok]), np.bincount(g)
    present = counts > 0
    return float((sums[present] / counts[present]).mean())


def paired_bootstrap(a, b, groups=None, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Difference ``metric(b) - metric(a)`` of two systems scored on the same queries (per-query
    values, NaN = query skipped; ``groups`` = class ids for a macro metric, see :func:`group_mean`)
    and its paired-bootstrap ``1 - alpha`` interval: queries are resampled with replacement ``n``
    times and the same resample scores both systems. Returns ``(diff, low, high)``."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    g = None if groups is None else np.asarray(groups)
    diff = group_mean(b, g) - group_mean(a, g)
    rng = np.random.default_rng(seed)
    reps = np.empty(n)
    for i in range(n):
        idx = rng.integers(0, len(a), len(a))
        gi = None if g is None else g[idx]
        reps[i] = group_mean(b[idx], gi) - group_mean(a[idx], gi)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return diff, float(low), float(high)
