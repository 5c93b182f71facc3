"""Splicing the video tokens E_v into the prompt embeddings (paper Sec. 3.4, Fig. 4).

The prompt holds one run of placeholder positions per sample with a video (see
:mod:`elmd.models.prompt`); their embeddings are replaced, in order, by that sample's video
token embeddings. A pure function: nothing is modified in place.
"""

from __future__ import annotations

import torch


def splice_video(inputs_embeds: torch.Tensor, video_mask: torch.Tensor, video_embeds: torch.Tensor) -> torch.Tensor:
    """Return ``inputs_embeds`` with the positions of ``video_mask`` replaced by ``video_embeds``.

    inputs_embeds [B, T, D]; video_mask [B, T] bool, each row with either 0 or V true positions;
    video_embeds [B, V, D] (rows whose mask is empty are ignored). Returns [B, T, D].
    Raises ValueError when shapes or per-row counts do not match.
    """
    B, T, D = inputs_embeds.shape
    if video_mask.shape != (B, T):
        raise ValueError(f"video_mask {tuple(video_mask.shape)} does not match inputs_embeds {(B, T, D)}")
    if video_embeds.dim() != 3 or video_embeds.shape[0] != B or video_embeds.shape[2] != D:
        raise ValueError(f"video_embeds {tuple(video_embeds.shape)} is not [B={B}, V, D={D}]")
    V = video_embeds.shape[1]
    counts = video_mask.sum(dim=1)  # [B]
    bad = (counts != 0) & (counts != V)
    if bad.any():
        b = int(bad.nonzero()[0, 0])
        raise ValueError(f"row {b} has {int(counts[b])} video positions but {V} video tokens")
    rows = counts > 0  # [B]
    source = video_embeds[rows].to(inputs_embeds.dtype)  # [B', V, D], filled row-major like the mask
    return inputs_embeds.masked_scatter(video_mask.unsqueeze(-1).expand(B, T, D), source)
