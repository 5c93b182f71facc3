"""Eq. 2 (ERT), Eq. 3-4 (SSC), block masks, groups and metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retrieval.groups import sample_groups, usable_anchors
from retrieval.losses import EmotionLoss, ERTLoss, RetrievalLoss, SSCLoss
from retrieval.metrics import char_f1, emotion_agreement, mean_char_f1
from retrieval.ssc import SSCHead, block_masks, search_representation, split_blocks


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_ert_loss_hand_computed():
    # anchor = positive (cos 1), negative orthogonal (cos 0), tau 0.5: -log(e^2 / (e^2 + e^0))
    z = t([[[1, 0], [3, 0], [0, 2]]])
    assert ERTLoss(0.5)(z).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # n_e = 3: positive orthogonal (0), negatives at cos 1 and -1: -log(1 / (1 + e^2 + e^-2))
    z = t([[[1, 0], [0, 1], [2, 0], [-1, 0]]])
    assert ERTLoss(0.5)(z).item() == pytest.approx(math.log(1 + math.exp(2) + math.exp(-2)), abs=1e-5)
    # mean over groups, and tau matters: tau = 1 gives -log(e / (e + 1))
    z = t([[[1, 0], [1, 0], [0, 1]], [[1, 0], [1, 0], [0, 1]]])
    assert ERTLoss(1.0)(z).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_ssc_loss_hand_computed():
    a = [[1, 0], [0, 1]]  # s = 2 sub-vectors of width 2
    swapped = [[0, 1], [1, 0]]
    # one pair, identical components: each i has logits [2, 0] -> log(1 + e^-2); 1/(s n_s) * 2 terms
    assert SSCLoss(0.5)(t([[a, a]])).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # three samples a, a, swapped -> pairs (a,a), (a,sw), (a,sw): 2 log(1+e^-2) + 4 log(1+e^2), over s*n_s = 6
    want = (2 * math.log(1 + math.exp(-2)) + 4 * math.log(1 + math.exp(2))) / 6
    assert SSCLoss(0.5)(t([[a, a, swapped]])).item() == pytest.approx(want, abs=1e-5)


def test_ssc_loss_matches_pair_loop():
    torch.manual_seed(0)
    h = torch.randn(3, 4, 4, 5)  # B=3 groups of n_e+1=4 samples, s=4, w=5
    loss = SSCLoss(0.5)(h)
    ref = 0.0
    for b in range(3):
        terms = []
        for i in range(4):
            for j in range(i + 1, 4):
                ha = torch.nn.functional.normalize(h[b, i], dim=-1)
                hb = torch.nn.functional.normalize(h[b, j], dim=-1)
                logits = ha @ hb.T / 0.5
                terms.append(torch.nn.functional.cross_entropy(logits, torch.arange(4), reduction="sum"))
        ref += sum(terms) / (4 * len(terms))
    assert loss.item() == pytest.approx(ref.item() / 3, rel=1e-5)


def test_retrieval_loss_combines_and_ablates():
    z, h = t([[[1, 0], [1, 0], [0, 1]]]), torch.randn(1, 3, 2, 2)
    l_e, l_c = ERTLoss(0.5)(z), SSCLoss(0.5, center=True)(h)  # RetrievalLoss centres the sub-vectors
    assert RetrievalLoss(0.5, center=False)(z, h)["loss"].item() == pytest.approx(l_e.item() + SSCLoss(0.5)(h).item(), rel=1e-6)
    logits, emo = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([[0, 0, 1]])
    ce = torch.nn.functional.cross_entropy(logits, emo[0])
    with_emo = RetrievalLoss(0.5, emotion=EmotionLoss(), mu=0.5)(z, h, emo, logits)
    assert with_emo["l_emo"].item() == pytest.approx(ce.item()) and with_emo["loss"].item() == pytest.approx(
        l_e.item() + l_c.item() + 0.5 * ce.item(), rel=1e-6)
    assert "l_emo" not in RetrievalLoss(0.5, ert=False, emotion=EmotionLoss())(z, h, emo, logits)  # w/o ERT: no head
    assert RetrievalLoss(0.5, lam=2.0)(z, h)["loss"].item() == pytest.approx(2 * l_e.item() + l_c.item(), rel=1e-6)
    assert RetrievalLoss(0.5, ssc=False)(z)["loss"].item() == pytest.approx(l_e.item(), rel=1e-6)
    assert RetrievalLoss(0.5, ert=False)(z, h)["loss"].item() == pytest.approx(l_c.item(), rel=1e-6)
    with pytest.raises(ValueError):
        RetrievalLoss(ert=False, ssc=False)


def test_block_masks():
    m = block_masks(8, 4)
    assert m.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0],
                          [0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1]]
    with pytest.raises(ValueError, match="divisible"):
        block_masks(10, 4)


def test_ssc_head_starts_as_block_split_and_search_is_mean_block_cosine():
    torch.manual_seed(0)
    head = SSCHead(8, 4)
    e = torch.randn(3, 8)
    assert torch.allclose(head(e), e.view(3, 4, 2))  # skip connection, zero-initialised last layer
    torch.nn.init.normal_(head.mlp[-1].weight)  # a trained (non-identity) head
    z = search_representation(e, head)
    h = head(e)
    want = torch.nn.functional.cosine_similarity(h[0], h[1], dim=-1).mean()
    assert (z[0] @ z[1]).item() == pytest.approx(want.item(), abs=1e-6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3))
    assert torch.allclose(split_blocks(z, 4).norm(dim=-1), torch.full((3, 4), 0.5))
    plain = search_representation(e, None)
    assert (plain[0] @ plain[1]).item() == pytest.approx(torch.cosine_similarity(e[0], e[1], dim=0).item(), abs=1e-6)


def test_group_sampling():
    emotions = ["a", "a", "a", "b", "b", "c", "d"]
    anchors = usable_anchors(emotions)
    assert anchors.tolist() == [0, 1, 2, 3, 4]  # c and d have no positive
    g = sample_groups(anchors, emotions, n_e=3, rng=np.random.default_rng(0))
    assert g.shape == (5, 4)
    for row in g:
        a, p, *negs = row
        assert p != a and emotions[p] == emotions[a]
        neg_emos = [emotions[n] for n in negs]
        assert emotions[a] not in neg_emos and len(set(neg_emos)) == 2  # distinct while possible


def test_metrics_hand_computed():
    gold = ["happy", "sad", None]
    ret = [["happy", "sad"], ["happy"], ["sad", "sad"]]
    assert emotion_agreement(gold, ret, 1) == pytest.approx(0.5)  # None query skipped
    assert emotion_agreement(gold, ret, 2) == pytest.approx((0.5 + 0.0) / 2)  # missing hit disagrees
    assert char_f1("你好啊", "你好") == pytest.approx(0.8)  # P = 2/3, R = 1
    assert char_f1("好好", "好") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert char_f1("", "你") == 0.0
    assert mean_char_f1(["你好", None], ["你好", "他"]) == pytest.approx(0.5)
