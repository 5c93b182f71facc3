"""Eq. 5-9 pooling and projection, checked against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from elmd.models.pooling import VideoProjector, num_video_tokens, pool_video, spatial_pool, temporal_pool


def _feats():
    # B=1, m=2 frames, Q=3 queries, q=2: feats[0, f, j] = [10f + j, -(10f + j)]
    x = torch.zeros(1, 2, 3, 2)
    for f in range(2):
        for j in range(3):
            x[0, f, j] = torch.tensor([10.0 * f + j, -(10.0 * f + j)])
    return x


def test_temporal_pool_is_mean_over_frames():
    v_t = temporal_pool(_feats())  # mean over f of 10f + j = 5 + j
    assert v_t.shape == (1, 3, 2)
    assert torch.equal(v_t[0, :, 0], torch.tensor([5.0, 6.0, 7.0]))
    assert torch.equal(v_t[0, :, 1], -v_t[0, :, 0])


def test_spatial_pool_is_mean_over_queries():
    v_s = spatial_pool(_feats())  # mean over j of 10f + j = 10f + 1
    assert v_s.shape == (1, 2, 2)
    assert torch.equal(v_s[0, :, 0], torch.tensor([1.0, 11.0]))


def test_pool_video_puts_temporal_rows_first():
    v_c = pool_video(_feats())
    assert v_c.shape == (1, 3 + 2, 2)
    assert torch.equal(v_c[0, :, 0], torch.tensor([5.0, 6.0, 7.0, 1.0, 11.0]))


def test_pool_video_shapes_paper_sizes():
    assert pool_video(torch.randn(2, 8, 32, 16)).shape == (2, 40, 16)
    assert num_video_tokens(8, 32) == 40
    with pytest.raises(ValueError, match=r"\[B, m, Q, q\]"):
        pool_video(torch.randn(8, 32, 16))


def test_projector_is_linear_of_pooled():
    torch.manual_seed(0)
    proj = VideoProjector(q_dim=2, hidden_size=4)
    out = proj(_feats())
    assert out.shape == (1, 5, 4)
    expected = pool_video(_feats()) @ proj.proj.weight.T + proj.proj.bias
    assert torch.allclose(out, expected)
    # zero video -> every token equals the bias
    assert torch.allclose(proj(torch.zeros(1, 2, 3, 2)), proj.proj.bias.expand(1, 5, 4))


def test_projector_is_trainable_and_checks_q():
    proj = VideoProjector(q_dim=2, hidden_size=4)
    proj(_feats()).sum().backward()
    assert proj.proj.weight.grad is not None and proj.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="q = 2"):
        proj(torch.randn(1, 2, 3, 5))
