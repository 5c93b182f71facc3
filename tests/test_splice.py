"""splice_video: placeholder embeddings replaced in order, rows without video untouched, errors."""

from __future__ import annotations

import pytest
import torch

from elmd.models.splice import splice_video


def test_splice_replaces_exactly_the_masked_positions_in_order():
    B, T, D, V = 3, 6, 2, 2
    embeds = torch.arange(B * T * D, dtype=torch.float32).view(B, T, D)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 2:4] = True  # row 0: positions 2, 3
    mask[2, 4:6] = True  # row 2: positions 4, 5; row 1 has no video
    video = -1.0 - torch.arange(B * V * D, dtype=torch.float32).view(B, V, D)
    out = splice_video(embeds, mask, video)

    expected = embeds.clone()
    expected[0, 2], expected[0, 3] = video[0, 0], video[0, 1]
    expected[2, 4], expected[2, 5] = video[2, 0], video[2, 1]
    assert torch.equal(out, expected)
    assert torch.equal(out[1], embeds[1])  # video[1] ignored
    assert embeds[0, 2, 0].item() == 4.0  # input not modified


def test_splice_gradient_reaches_only_used_video_rows():
    embeds = torch.zeros(2, 4, 3, requires_grad=True)
    mask = torch.tensor([[False, True, True, False], [False, False, False, False]])
    video = torch.randn(2, 2, 3, requires_grad=True)
    (splice_video(embeds, mask, video) * torch.arange(1.0, 4.0)).sum().backward()
    assert torch.equal(video.grad[0], torch.tensor([[1.0, 2.0, 3.0]] * 2))
    assert torch.equal(video.grad[1], torch.zeros(2, 3))
    assert torch.equal(embeds.grad[0, 1], torch.zeros(3)) and torch.equal(embeds.grad[0, 0], torch.arange(1.0, 4.0))


def test_splice_casts_video_to_the_embedding_dtype():
    embeds = torch.zeros(1, 3, 2, dtype=torch.bfloat16)
    mask = torch.tensor([[True, True, False]])
    out = splice_video(embeds, mask, torch.full((1, 2, 2), 0.5))
    assert out.dtype == torch.bfloat16 and out[0, :2].eq(0.5).all() and out[0, 2].eq(0).all()


@pytest.mark.parametrize("mask_row, video_shape, message", [
    ([True, True, True, False], (1, 2, 2), "row 0 has 3 video positions but 2"),
    ([True, False, False, False], (1, 2, 2), "row 0 has 1 video positions"),
    ([True, True, False, False], (2, 2, 2), r"is not \[B=1"),
    ([True, True, False, False], (1, 2, 3), r"is not \[B=1, V, D=2\]"),
])
def test_splice_rejects_mismatched_counts_and_shapes(mask_row, video_shape, message):
    with pytest.raises(ValueError, match=message):
        splice_video(torch.zeros(1, 4, 2), torch.tensor([mask_row]), torch.zeros(video_shape))
