"""eerg's emotion-weighted loss (elmd.training.emotion_loss), checked against hand computation."""

import math
from types import SimpleNamespace

import torch

from elmd.models.prompt import IGNORE
from elmd.training.emotion_loss import EmotionWeightedLoss, emotion_spans

LABELS = [[5], [6, 7]]  # a one-token and a two-token label word


def test_spans_find_the_label_word_each_target_opens_with():
    labels = torch.tensor([[IGNORE, IGNORE, 6, 7, 9, 2],
                           [IGNORE, 5, 9, 9, 2, IGNORE],
                           [IGNORE, IGNORE, IGNORE, 9, 9, 2]])  # opens with no label word
    assert emotion_spans(labels, LABELS) == [(2, 2), (1, 1), (3, 0)]


def test_loss_is_the_papers_plus_w_times_the_per_sample_mean_emotion_ce():
    V = 10
    logits = torch.zeros(2, 5, V)
    # row 0: target 6 7 2 at positions 2..4 (predicted from 1..3); row 1: target 5 2 at 3..4
    logits[0, 1, 6] = math.log(3.0)      # P(6) = 3/12 = 0.25
    logits[0, 2, 7] = math.log(9.0)      # P(7) = 9/18 = 0.5
    logits[1, 2, 5] = math.log(1.0)      # uniform: P(5) = 0.1
    labels = torch.tensor([[IGNORE, IGNORE, 6, 7, 2], [IGNORE, IGNORE, IGNORE, 5, 2]])
    batch = {"labels": labels, "global_target_tokens": 5, "global_samples": 4}  # as if half of a global batch
    out = SimpleNamespace(logits=logits)
    ce = {"6": -math.log(0.25), "7": -math.log(0.5), "2@0": -math.log(0.1), "5": -math.log(0.1), "2@1": -math.log(0.1)}
    paper = sum(ce.values()) / 5
    emotion = ((ce["6"] + ce["7"]) / 2 + ce["5"]) / 4
    got = EmotionWeightedLoss(LABELS, 2.0)(out, batch)
    assert math.isclose(got["target"].item(), paper, rel_tol=1e-6)
    assert math.isclose(got["emotion"].item(), emotion, rel_tol=1e-6)
    assert math.isclose(got["loss"].item(), paper + 2.0 * emotion, rel_tol=1e-6)
    assert math.isclose(EmotionWeightedLoss(LABELS, 0.0)(out, batch)["loss"].item(), paper, rel_tol=1e-6)


def test_the_emotion_term_moves_only_the_emotion_positions():
    labels = torch.tensor([[IGNORE, IGNORE, 5, 9, 2]])
    batch = {"labels": labels, "global_target_tokens": 3, "global_samples": 1}
    grads = []
    for w in (0.0, 1.0):
        logits = torch.zeros(1, 5, 10, requires_grad=True)
        EmotionWeightedLoss(LABELS, w)(SimpleNamespace(logits=logits), batch)["loss"].backward()
        grads.append(logits.grad)
    moved = (grads[1] - grads[0]).abs().sum(-1)[0]
    assert moved[1] > 0 and moved[[0, 2, 3, 4]].sum() == 0
