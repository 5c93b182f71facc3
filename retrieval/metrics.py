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
