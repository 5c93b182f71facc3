"""Emotion-aware scoring (issue 13): hand-computed re-ranking, the fallback, tuning, degenerate
entries, the SSC collapse fix, in-batch negatives and the new metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retrieval.losses import ERTLoss, SSCLoss, balanced_weights
from retrieval.metrics import accuracy_macro_f1, group_mean, macro_agreement, paired_bootstrap
from retrieval.scoring import FILTER_BETA, Scoring, rank


def arr(x, dtype=np.float32):
    return np.array(x, dtype=dtype)


COS = arr([[0.9, 0.8, 0.5]])
LAB = arr([[0, 1, 1]], np.int64)
OK = np.ones((1, 3), dtype=bool)
P = arr([[0.2, 0.7, 0.1]])


def test_soft_scoring_hand_computed():
    order, score = rank(COS, LAB, OK, P, Scoring("soft", 0.5, 10), 3)
    # 0.9 + 0.5*0.2 = 1.0, 0.8 + 0.5*0.7 = 1.15, 0.5 + 0.5*0.7 = 0.85
    assert order.tolist() == [[1, 0, 2]]
    assert score[0].tolist() == pytest.approx([1.15, 1.0, 0.85], abs=1e-6)
    # beta = 0.1: 0.92, 0.87, 0.57 -> cosine order kept
    assert rank(COS, LAB, OK, P, Scoring("soft", 0.1, 10), 3)[0].tolist() == [[0, 1, 2]]
    # plain cosine ignores the probabilities (and needs none)
    order, score = rank(COS, LAB, OK, None, Scoring(), 2)
    assert order.tolist() == [[0, 1]] and score[0].tolist() == pytest.approx([0.9, 0.8])


def test_filter_puts_predicted_emotion_first_and_unlabelled_gets_no_bonus():
    order, score = rank(COS, LAB, OK, P, Scoring("filter", 0, 10), 3)  # predicted class 1
    assert order.tolist() == [[1, 2, 0]]
    assert score[0].tolist() == pytest.approx([0.8 + FILTER_BETA, 0.5 + FILTER_BETA, 0.9])
    unlabelled = arr([[0, -1, 1]], np.int64)
    order, score = rank(COS, unlabelled, OK, P, Scoring("soft", 0.5, 10), 3)
    # 0.9 + 0.5 * 0.2 = 1.0; label -1: no bonus, 0.8; 0.5 + 0.5 * 0.7 = 0.85
    assert order.tolist() == [[0, 2, 1]] and score[0].tolist() == pytest.approx([1.0, 0.85, 0.8])


def test_fallback_when_no_candidate_matches():
    probs = arr([[0.1, 0.1, 0.8]])  # predicted class 2: no candidate carries it
    order, score = rank(COS, LAB, OK, probs, Scoring("filter", 0, 10), 3)
    assert order.tolist() == [[0, 1, 2]] and score[0].tolist() == pytest.approx([0.9, 0.8, 0.5])
    # excluded candidates are never returned, even when that leaves fewer than k
    allowed = arr([[False, True, False]], bool)
    order, score = rank(COS, LAB, allowed, probs, Scoring("filter", 0, 10), 3)
    assert order[0, 0] == 1 and np.isinf(score[0, 1:]).all()


class FakeRetriever:
    """Fixed search vectors and P(emotion | q) for a constructed tuning case."""

    emotion_head = object()
    emotion_labels = ["happy", "sad"]
    info: dict = {}
    label, path = "fake", None

    def __init__(self, vectors: dict, probs: dict, tfidf: dict | None = None):
        self.vectors, self.probs, self.tfidf = vectors, probs, tfidf
        self.classifiers = ("head", "tfidf", "mean") if tfidf else ("head",)

    def emotion_probs(self, texts, source, head_probs=None, contexts=None):
        tf = np.stack([self.tfidf.get(t, [0.5, 0.5]) for t in texts]).astype(np.float32) if self.tfidf else None
        head = self.encode(texts, with_probs=True)[1]
        return {"head": head, "tfidf": tf, "mean": (head + tf) / 2 if tf is not None else None}[source]

    def encode(self, texts, batch_size=256, progress=False, with_probs=False, degenerate=None):
        z = np.stack([self.vectors[t] for t in texts]).astype(np.float32)
        return (z, np.stack([self.probs.get(t, [0.5, 0.5]) for t in texts]).astype(np.float32)) if with_probs else z

    def degenerate(self, texts):
        return np.zeros(len(texts), dtype=bool)


def unit(deg):
    return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


def test_tuning_picks_the_beta_that_maximises_valid_agreement():
    from elmd.data.schema import Sample, Turn
    from retrieval.index import DemonstrationIndex
    from retrieval.tune import tune_scoring

    def sample(i, text, emo):
        return Sample(f"d{i}#0", f"d{i}", "s", "", [], Turn("A", text, emo), Turn("B", "好", "happy"))

    # entries: x (happy) at 0 deg, y (sad) at 90 deg. Query A (sad) at 39 deg: cos to x 0.777,
    # to y 0.629 (gap 0.148), head right (P(sad) = 0.9): flips to y once 0.8 * beta > 0.148.
    # Query B (happy) at 30 deg: gap cos 30 - cos 60 = 0.366, head wrong (P(sad) = 0.9): flips
    # (wrongly) once 0.8 * beta > 0.366. So beta in (0.185, 0.457) gets both right.
    vecs = {"x": unit(0), "y": unit(90), "qa": unit(39), "qb": unit(30)}
    probs = {"qa": [0.1, 0.9], "qb": [0.1, 0.9]}
    retr = FakeRetriever(vecs, probs)
    index = DemonstrationIndex.build([sample(0, "x", "happy"), sample(1, "y", "sad")], retr)
    valid = [sample(2, "qa", "sad"), sample(3, "qb", "happy")]
    grid = [Scoring()] + [Scoring("soft", b, 10) for b in (0.1, 0.3, 0.5, 1.0)]
    res = tune_scoring(index, valid, "utt_agree@1", min_f1_ratio=0.0, grid=grid)
    assert res.scoring == Scoring("soft", 0.3, 10)
    assert res.cosine["utt_agree@1"] == 0.5 and res.valid["utt_agree@1"] == 1.0
    assert [row["utt_agree@1"] for row in res.grid] == [0.5, 0.5, 1.0, 0.5, 0.5]
    # the search path ranks with the same scoring: query A now retrieves y
    hits = index.search(["qa"], 1, scoring=res.scoring)
    assert hits[0][0].utterance == "y" and hits[0][0].score == pytest.approx(math.cos(math.radians(51)) + 0.27, abs=1e-5)


def test_degenerate_entries_are_never_hits(train_texts, retrieval_data):
    from elmd.data.jsonl import read_samples
    from retrieval.encoder import load_retriever
    from retrieval.index import DemonstrationIndex

    r = load_retriever("builtin:char", texts=train_texts, device="cpu", dim=64, vocab=300, seed=0)
    samples = read_samples(retrieval_data["train"])[:20]
    odd = [s.__class__(f"x{i}", f"x{i}", "s", "", [], s.utterance.__class__("A", t, "happy"), s.response)
           for i, (s, t) in enumerate(zip(samples, ["噔噔噔噔", "姥姥"]))]
    assert r.degenerate(["噔噔噔噔", "姥姥", "", samples[0].utterance.text]).tolist() == [True, True, True, False]
    index = DemonstrationIndex.build(samples + odd, r)
    assert index.meta["degenerate_entries"] == 2
    hits = index.search(["噔噔噔噔", "姥姥", samples[0].utterance.text], k=len(index))
    assert all(h.utterance not in ("噔噔噔噔", "姥姥") for hs in hits for h in hs)
    assert all(len(hs) == 20 for hs in hits)  # every other entry is still returned


def test_ssc_centering_removes_the_collapsed_minimum():
    # every sample's component i is the same constant vector, components mutually far apart
    s, w = 4, 3
    consts = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])  # exact: the mean subtracts to 0
    h = consts.expand(8, 3, s, w).clone()
    literal, centred = SSCLoss(0.5)(h).item(), SSCLoss(0.5, center=True)(h).item()
    assert literal < math.log(s) - 0.3  # Eq. 4 verbatim rewards the collapse
    assert centred == pytest.approx(math.log(s), abs=1e-5)  # centred: no signal left, no reward
    # a per-component offset added to every sample does not change the centred loss
    x = torch.randn(8, 3, s, w)
    assert SSCLoss(0.5, center=True)(x + 5 * consts).item() == pytest.approx(SSCLoss(0.5, center=True)(x).item(), rel=1e-5)


def test_in_batch_negatives_hand_computed():
    # two groups (anchor, positive): group 0 happy/happy, group 1 sad/sad; tau = 1
    z = torch.tensor([[[1.0, 0], [1, 0]], [[0, 1.0], [1, 0]]])
    emo = torch.tensor([[0, 0], [1, 1]])
    loss = ERTLoss(1.0, in_batch=True)(z, emo)
    # anchor 0: positive cos 1, negatives = items of group 1 (cos 0 and 1) -> -log(e / (e + 1 + e))
    # anchor 1: positive cos 0, negatives = items of group 0 (cos 0, 0) -> -log(1 / 3)
    want = (-math.log(math.e / (2 * math.e + 1)) + math.log(3)) / 2
    assert loss.item() == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError):
        ERTLoss(1.0, in_batch=True)(z)


def test_new_metrics_hand_computed():
    gold = ["a", "a", "a", "b", None]
    top1 = ["a", "a", "b", "a", "a"]
    assert macro_agreement(gold, top1) == pytest.approx((2 / 3 + 0) / 2)
    acc, f1 = accuracy_macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert acc == 0.75 and f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert group_mean([1, 0, np.nan, 1], [0, 0, 1, 1]) == pytest.approx(0.75)
    w = balanced_weights([0, 0, 0, 1], 3)
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    a, b = np.array([0, 1, 0, 1.0]), np.array([1, 1, 0, 1.0])
    diff, low, high = paired_bootstrap(a, b, n=200, seed=0)
    assert diff == 0.25 and 0 <= low <= diff <= high <= 1
    assert paired_bootstrap(a, a, n=50) == (0.0, 0.0, 0.0)


def test_prior_adjustment_hand_computed():
    from retrieval.scoring import adjust

    probs, prior = arr([[0.5, 0.5]]), np.array([0.8, 0.2])
    assert adjust(probs, prior, 0.0) is probs
    assert adjust(probs, prior, 1.0)[0].tolist() == pytest.approx([0.8, 0.2])
    assert adjust(probs, prior, 0.5)[0].tolist() == pytest.approx([2 / 3, 1 / 3])
    # filter with prior 1: the frequent class 0 becomes the prediction (0.4*0.8 > 0.6*0.2)
    cos, lab = arr([[0.9, 0.8]]), arr([[1, 0]], np.int64)
    ok = np.ones((1, 2), dtype=bool)
    assert rank(cos, lab, ok, arr([[0.4, 0.6]]), Scoring("filter", 0, 10), 2)[0].tolist() == [[0, 1]]
    assert rank(cos, lab, ok, arr([[0.4, 0.6]]), Scoring("filter", 0, 10, 1.0), 2, prior)[0].tolist() == [[1, 0]]


def test_emotion_head_extra_turns_and_loss():
    from elmd.data.schema import Sample, Turn
    from retrieval.losses import EmotionLoss, RetrievalLoss
    from retrieval.train import _extra_turns

    # a dialogue a -> b -> c: samples (a, b) and (b, c); c is a labelled turn that no sample has as u
    s1 = Sample("d#0", "d", "s", "", [], Turn("A", "a", "happy"), Turn("B", "b", "sad"))
    s2 = Sample("d#1", "d", "s", "", [], Turn("B", "b", "sad"), Turn("A", "c", "anger"))
    assert _extra_turns([s1, s2], ["happy", "sad", "anger"]) == (["c"], [2])
    z = torch.nn.functional.normalize(torch.randn(1, 3, 4), dim=-1)
    logits, emo = torch.randn(3, 3), torch.tensor([[0, 0, 1]])
    extra = (torch.randn(2, 3), torch.tensor([2, 1]))
    out = RetrievalLoss(0.5, ssc=False, emotion=EmotionLoss())(z, None, emo, logits, extra)
    want = torch.nn.functional.cross_entropy(torch.cat([logits, extra[0]]), torch.tensor([0, 0, 1, 2, 1]))
    assert out["l_emo"].item() == pytest.approx(want.item(), rel=1e-6)
