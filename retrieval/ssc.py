"""Self-Separated Component, the sub-vector head (paper Sec. 3.3, Alg. 1, Eq. 3).

The sentence embedding ``e_u`` (d values) is split into ``s`` self-separated sub-vectors::

    c_i = block mask of width d/s: ones on dimensions [i*d/s, (i+1)*d/s), zeros elsewhere
    h_i = MLP([e_u + c_i ; c_i])          i = 1..s          (Eq. 3; ';' = concatenation)

The MLP (2d -> d -> d/s, GELU) is shared by the ``s`` components; the mask tells it which
component to produce. Each ``h_i`` has width d/s, so ``E_s = [h_1; ...; h_s]`` has d values like
``e_u``.

**Initialisation (our choice).** The MLP output is added to block i of ``e_u`` (a skip connection)
and its last layer starts at zero, so before training ``h_i`` is exactly block i of ``e_u`` and
the head starts from the encoder's own geometry. A randomly initialised head would throw that
geometry away: on CPED it made every sub-vector collapse to a per-component constant within the
first epoch (``L_c`` falls while ``L_e`` sits at log 2), retrieval then being at chance.

**Search representation.** :func:`search_representation` L2-normalises every ``h_i`` and
concatenates them divided by ``sqrt(s)``: the result has unit norm and the inner product of two of
them is the *mean block cosine* ``1/s * sum_i cos(h_i, h'_i)``. A FAISS inner-product index over
these vectors therefore ranks by mean sub-vector cosine. Without SSC the search representation is
the normalised ``e_u`` (inner product = cosine).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def block_masks(d: int, s: int) -> torch.Tensor:
    """The ``(s, d)`` 0/1 matrix whose row i is the block mask ``c_i`` of width ``d / s``."""
    if s < 1 or d % s:
        raise ValueError(f"embedding size {d} is not divisible by s={s}; choose s dividing {d}")
    w = d // s
    return torch.repeat_interleave(torch.eye(s), w, dim=1)


class SSCHead(nn.Module):
    """``h_i = block_i(e_u) + MLP([e_u + c_i ; c_i])`` for i = 1..s (Eq. 3 with a skip connection,
    see the module docstring); maps ``(B, d)`` to ``(B, s, d/s)``."""

    def __init__(self, d: int, s: int = 4, hidden: int | None = None):
        super().__init__()
        self.d, self.s = d, s
        self.register_buffer("masks", block_masks(d, s), persistent=False)
        hidden = hidden or d
        self.mlp = nn.Sequential(nn.Linear(2 * d, hidden), nn.GELU(), nn.Linear(hidden, d // s))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        c = self.masks.to(e.dtype).unsqueeze(0).expand(e.shape[0], -1, -1)  # (B, s, d)
        x = torch.cat([e.unsqueeze(1) + c, c], dim=-1)  # (B, s, 2d)
        return e.unflatten(-1, (self.s, self.d // self.s)) + self.mlp(x)


def search_representation(e: torch.Tensor, head: SSCHead | None) -> torch.Tensor:
    """Unit vectors whose inner product is the cosine (no SSC) or the mean block cosine (SSC)."""
    if head is None:
        return F.normalize(e, dim=-1)
    return join_blocks(head(e))


def join_blocks(h: torch.Tensor) -> torch.Tensor:
    """``(B, s, w)`` sub-vectors -> ``(B, s*w)``: each normalised, concatenated, divided by sqrt(s)."""
    return F.normalize(h, dim=-1).flatten(1) / math.sqrt(h.shape[1])


def split_blocks(z: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse view of :func:`search_representation`'s concatenation: ``(..., D)`` -> ``(..., s, D/s)``."""
    return z.unflatten(-1, (s, z.shape[-1] // s))
