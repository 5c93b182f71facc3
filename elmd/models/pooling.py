"""Video-token pooling and projection (paper Sec. 3.4, Eq. 5-9).

The frozen Q-Former turns each of the m frames into Q = 32 query vectors of size q, giving
F in R^{m x Q x q} per video. ELMD pools it two ways and concatenates:

    V_t = mean over frames   (Eq. 6)  -> Q x q   temporal pooling, one vector per query
    V_s = mean over queries  (Eq. 7)  -> m x q   spatial pooling, one vector per frame
    V_c = [V_t; V_s]         (Eq. 8)  -> (m + Q) x q
    E_v = Linear(V_c)        (Eq. 9)  -> (m + Q) x hidden, the video tokens spliced into the prompt

So a video contributes ``m + Q`` tokens (8 + 32 = 40 with the paper's settings).
"""

from __future__ import annotations

import torch
from torch import nn


def temporal_pool(feats: torch.Tensor) -> torch.Tensor:
    """V_t (Eq. 6): [B, m, Q, q] -> [B, Q, q], mean over the m frames."""
    return feats.mean(dim=1)


def spatial_pool(feats: torch.Tensor) -> torch.Tensor:
    """V_s (Eq. 7): [B, m, Q, q] -> [B, m, q], mean over the Q query tokens."""
    return feats.mean(dim=2)


def pool_video(feats: torch.Tensor) -> torch.Tensor:
    """V_c = [V_t; V_s] (Eq. 8): [B, m, Q, q] -> [B, Q + m, q] (V_t rows first, then V_s)."""
    if feats.dim() != 4:
        raise ValueError(f"pool_video expects [B, m, Q, q] features, got shape {tuple(feats.shape)}")
    return torch.cat([temporal_pool(feats), spatial_pool(feats)], dim=1)


def num_video_tokens(num_frames: int, num_query_tokens: int) -> int:
    """Length of E_v: m + Q."""
    return num_frames + num_query_tokens


class VideoProjector(nn.Module):
    """E_v = W V_c + b (Eq. 9): pooled Q-Former features into the LLM's embedding space.

    The only trainable part of the visual path (ViT and Q-Former stay frozen).
    """

    def __init__(self, q_dim: int, hidden_size: int):
        super().__init__()
        self.q_dim, self.hidden_size = q_dim, hidden_size
        self.proj = nn.Linear(q_dim, hidden_size)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, m, Q, q] -> [B, m + Q, hidden] (rows: Q temporal tokens, then m spatial tokens)."""
        if feats.shape[-1] != self.q_dim:
            raise ValueError(f"VideoProjector expects q = {self.q_dim} features, got {feats.shape[-1]}")
        pooled = pool_video(feats.to(self.proj.weight.dtype))  # [B, Q + m, q]
        return self.proj(pooled)  # [B, Q + m, hidden]
