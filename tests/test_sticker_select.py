"""Top-k sticker choice (elmd.heads.sticker.select): hand-computed cases and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from elmd.heads.sticker.select import select_stickers, top_indices

SCORES = np.array([0.9, 0.5, 0.7, 0.7, 0.1, 0.8])
EMOS = np.array(["happy", "sad", "happy", "happy", "sad", "sad"])


def test_ignore_ranks_by_score_ties_to_lower_index():
    assert select_stickers(SCORES, EMOS, "sad", 3, mode="ignore") == [0, 5, 2]
    assert select_stickers(SCORES, EMOS, None, 4) == [0, 5, 2, 3]  # no emotion known: score only


def test_prefer_puts_the_emotion_first_then_fills():
    assert select_stickers(SCORES, EMOS, "sad", 3) == [5, 1, 4]
    assert select_stickers(SCORES, EMOS, "sad", 4) == [5, 1, 4, 0]


def test_filter_returns_only_the_emotion():
    assert select_stickers(SCORES, EMOS, "sad", 4, mode="filter") == [5, 1, 4]
    assert select_stickers(SCORES, EMOS, "fear", 2, mode="filter") == []
    assert select_stickers(SCORES, EMOS, "fear", 2, mode="prefer") == [0, 5]


def test_shown_stickers_are_never_returned():
    excluded = np.array([True, False, False, False, False, False])
    assert select_stickers(SCORES, EMOS, "happy", 3, excluded) == [2, 3, 5]
    assert select_stickers(SCORES, EMOS, "happy", 3, np.ones(6, bool)) == []


def test_top_indices_boundary_ties():
    assert top_indices(np.array([0.5, 0.5, 0.5]), np.arange(3), 2) == [0, 1]
    assert top_indices(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 2, 3]), 2) == [3, 2]
    assert top_indices(np.array([1.0]), np.arange(1), 0) == []


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        select_stickers(SCORES, EMOS, "sad", 1, mode="best")


def _reference(scores, emotions, emotion, k, excluded, mode):
    idx = [i for i in range(len(scores)) if not excluded[i]]
    if mode == "filter":
        idx = [i for i in idx if emotions[i] == emotion]
    group = (lambda i: 0) if mode == "ignore" else (lambda i: 0 if emotions[i] == emotion else 1)
    return sorted(idx, key=lambda i: (group(i), -scores[i], i))[:k]


@pytest.mark.parametrize("mode", ["prefer", "filter", "ignore"])
def test_matches_brute_force_on_random_libraries(mode):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 6, n) / 5.0  # many ties
        emotions = rng.choice(["happy", "sad", "anger"], n)
        excluded = rng.random(n) < 0.3
        k = int(rng.integers(1, 8))
        got = select_stickers(scores, emotions, "sad", k, excluded, mode)
        assert got == _reference(scores, emotions, "sad", k, excluded, mode)
