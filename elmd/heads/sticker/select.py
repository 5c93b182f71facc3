"""Choosing the reply's stickers from library scores (issue 14, backend ``retrieve``).

PEGS scores every library sticker against the reply's retrieval embedding, pushes the stickers
already used in the conversation to the bottom (``scores[seen] -= 1000`` in ``retrieval_image``)
and keeps the top 5. ELMD also knows the reply's emotion, so the emotion can steer the choice:

* ``prefer`` - stickers of the reply's emotion first (by score), then the others (by score);
* ``filter`` - only stickers of the reply's emotion (fewer than k when the library has fewer);
* ``ignore`` - score only (PEGS).

Stickers in ``excluded`` (shown earlier in the conversation) are never returned. Ties in score
go to the lower library index, so the choice is deterministic. :func:`select_stickers` is pure:
numpy in, indices out, O(N) per query.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from elmd.heads.sticker.config import EMOTION_MODES


def top_indices(scores: np.ndarray, candidates: np.ndarray, k: int) -> list[int]:
    """The ``k`` best of ``candidates`` (indices into ``scores``) by score, ties to the lower index."""
    if k <= 0 or len(candidates) == 0:
        return []
    s = scores[candidates]
    if len(candidates) > k:
        thr = np.partition(s, len(s) - k)[len(s) - k]  # k-th largest score
        above = candidates[s > thr]
        tied = candidates[s == thr][: k - len(above)]  # candidates are ascending: lowest indices first
        candidates = np.concatenate([above, tied])
        s = scores[candidates]
    order = np.lexsort((candidates, -s))
    return [int(i) for i in candidates[order]]


def select_stickers(scores: np.ndarray, emotions: Sequence[str] | np.ndarray, emotion: str | None, k: int,
                    excluded: np.ndarray | None = None, mode: str = "prefer") -> list[int]:
    """Indices of the (at most) ``k`` stickers to show, best first.

    ``scores`` [N]: similarity of each library sticker to the reply; ``emotions`` [N]: each sticker's
    label id; ``emotion``: the reply's label id (None = no emotion known, scores only); ``excluded``
    [N] bool: stickers already shown; ``mode``: prefer | filter | ignore (module docstring).
    """
    if mode not in EMOTION_MODES:
        raise ValueError(f"mode must be one of {EMOTION_MODES}, got {mode!r}")
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    allowed = np.ones(n, bool) if excluded is None else ~np.asarray(excluded, bool)
    if emotion is None or mode == "ignore":
        return top_indices(scores, np.flatnonzero(allowed), k)
    match = np.asarray(emotions) == emotion
    first = top_indices(scores, np.flatnonzero(allowed & match), k)
    if mode == "filter" or len(first) >= k:
        return first
    return first + top_indices(scores, np.flatnonzero(allowed & ~match), k - len(first))
