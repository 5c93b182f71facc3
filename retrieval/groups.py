"""Training groups of the Emotional Retrieval Task (Sec. 3.3, Eq. 2).

For each anchor utterance: one positive with the same emotion and ``n_e - 1`` negatives with other
emotions. Negatives take distinct emotions while there are enough other emotions, then repeat.
"""

from __future__ import annotations

import numpy as np


def usable_anchors(emotions: list[str]) -> np.ndarray:
    """Indices whose emotion occurs at least twice (a positive exists)."""
    values, counts = np.unique(np.asarray(emotions), return_counts=True)
    ok = set(values[counts >= 2])
    return np.array([i for i, e in enumerate(emotions) if e in ok], dtype=np.int64)


def sample_groups(anchors: np.ndarray, emotions: list[str], n_e: int, rng: np.random.Generator) -> np.ndarray:
    """``(len(anchors), n_e + 1)`` item indices: anchor, positive, n_e - 1 negatives."""
    if n_e < 1:
        raise ValueError(f"n_e must be >= 1, got {n_e}")
    by_emotion: dict[str, np.ndarray] = {}
    for i, e in enumerate(emotions):
        by_emotion.setdefault(e, []).append(i)  # type: ignore[union-attr]
    by_emotion = {e: np.asarray(v) for e, v in by_emotion.items()}
    names = sorted(by_emotion)
    if n_e > 1 and len(names) < 2:
        raise ValueError("negatives need at least two emotions in the training data")
    groups = np.empty((len(anchors), n_e + 1), dtype=np.int64)
    for row, a in enumerate(anchors):
        same = by_emotion[emotions[a]]
        pos = a
        while pos == a:
            pos = same[rng.integers(len(same))]
        others = [e for e in names if e != emotions[a]]
        picks = rng.permutation(others)[: n_e - 1].tolist()
        while len(picks) < n_e - 1:
            picks.append(others[rng.integers(len(others))])
        groups[row, 0], groups[row, 1] = a, pos
        for j, e in enumerate(picks):
            pool = by_emotion[e]
            groups[row, 2 + j] = pool[rng.integers(len(pool))]
    return groups
