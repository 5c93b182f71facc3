"""Sticker metrics (elmd.heads.sticker.metrics) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from elmd.heads.sticker.metrics import (
    mm_relevance,
    mm_relevance_summary,
    mm_relevance_vectors,
    prior_emotion_accuracy,
    recall_at_k,
    scaled_cosine,
    sticker_emotion_accuracy,
    sticker_frequency,
)


def test_frequency():
    assert sticker_frequency([True, False, True, True]) == 0.75
    assert sticker_frequency([]) == 0.0


def test_emotion_accuracy_counts_only_replies_with_a_sticker():
    # rows 0, 2, 3 have a sticker; 0 and 2 match the reference
    assert sticker_emotion_accuracy(["happy", None, "sad", "anger"], ["happy", "sad", "sad", "fear"]) == pytest.approx(2 / 3)
    assert math.isnan(sticker_emotion_accuracy([None], ["happy"]))


def test_prior_accuracy_is_the_random_library_sticker_expectation():
    # library: happy 1/2, sad 1/4, anger 1/4; references: happy, sad, fear (1/3 each) -> 1/2*1/3 + 1/4*1/3
    assert prior_emotion_accuracy(["happy", "happy", "sad", "anger"], ["happy", "sad", "fear", None]) == pytest.approx(0.25)


def test_recall_at_k():
    returned, gold = [["a", "b", "c"], ["d", "e"], ["f"]], ["b", None, "g"]
    assert recall_at_k(returned, gold, 1) == 0.0
    assert recall_at_k(returned, gold, 2) == 0.5
    assert math.isnan(recall_at_k([["a"]], [None], 5))
    with pytest.raises(ValueError):
        recall_at_k(returned, gold, 0)


@pytest.mark.parametrize(
    "reply, ref, want",
    [
        (True, True, (25.0, 25.0, 25.0, 16.5)),  # total 50; MMr (50 + 10 + 6) / 4
        (False, True, (30.0, 15.0, 20.0, 20.0)),  # total 30 (vv, vt dropped); MMr (30 + 10) / 2
        (True, False, (15.0, 30.0, 20.0, 18.0)),  # MMr (30 + 6) / 2
        (False, False, (30.0, 30.0, 30.0, 30.0)),
    ],
)
def test_mm_relevance_follows_pegs(reply, ref, want):
    r = mm_relevance(30.0, vv=20.0, tv=10.0, vt=6.0, reply_has_sticker=reply, reference_has_sticker=ref)
    assert (r.precision, r.recall, r.f, r.mmr) == pytest.approx(want)


def test_mm_relevance_zero_similarity_does_not_divide_by_zero():
    assert mm_relevance(0.0, reply_has_sticker=True, reference_has_sticker=True).f == 0.0


def test_scaled_cosine_and_summary():
    assert scaled_cosine([1.0, 0.0], [1.0, 1.0]) == pytest.approx(100 / math.sqrt(2))
    assert scaled_cosine(None, [1.0]) == 0.0
    items = [mm_relevance(30.0, 20.0, 10.0, 6.0, reply_has_sticker=True, reference_has_sticker=True),
             mm_relevance(30.0, reply_has_sticker=False, reference_has_sticker=False)]
    s = mm_relevance_summary(items, [True, False])
    assert (s.freq, s.mmr, s.f_mmr, s.n) == (0.5, pytest.approx(23.25), pytest.approx(27.5), 2)


def test_mm_relevance_from_vectors():
    # cos(t, t') = 1, cos(v, v') = 0, cos(t, v') = 0, cos(v, t') = 1 -> tt 100, vv 0, tv 0, vt 100
    r = mm_relevance_vectors([1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0])
    assert (r.precision, r.recall, r.f, r.mmr) == pytest.approx((50.0, 50.0, 50.0, 50.0))
    r = mm_relevance_vectors([1.0, 0.0], None, [1.0, 0.0], None)
    assert (r.f, r.mmr) == pytest.approx((100.0, 100.0))
