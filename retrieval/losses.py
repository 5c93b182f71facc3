"""Losses of the Emotional Retrieval Module (paper Sec. 3.3, Eq. 2 and Eq. 4).

A training *group* holds ``n_e + 1`` samples: the anchor utterance (index 0), one positive with the
same emotion (index 1) and ``n_e - 1`` negatives with other emotions (indices 2..n_e).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ERTLoss(nn.Module):
    """Emotional Retrieval Task loss L_e (Eq. 2), an InfoNCE over one group::

        L_e = -log( exp(cos(z_a, z_+) / tau) / sum_{j in {+, -_1..-_{n_e-1}}} exp(cos(z_a, z_j) / tau) )

    Input ``z`` of shape ``(B, n_e + 1, D)`` (anchor, positive, negatives); returns the mean over
    the B groups. The representation is the search representation, so with SSC the cosine is the
    mean sub-vector cosine that the index ranks by.
    """

    def __init__(self, tau: float = 0.5):
        super().__init__()
        self.tau = tau

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 3 or z.shape[1] < 2:
            raise ValueError(f"expected (B, n_e + 1, D) with n_e >= 1, got {tuple(z.shape)}")
        z = F.normalize(z, dim=-1)
        logits = torch.einsum("bd,bjd->bj", z[:, 0], z[:, 1:]) / self.tau  # (B, n_e)
        target = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)  # the positive
        return F.cross_entropy(logits, target)


class SSCLoss(nn.Module):
    """Self-separated contrastive term (Alg. 1, Eq. 4): ``1/(s n_s) * sum_pairs L_c``.

    For a pair (a, b) of samples of a group, each sub-vector ``h_i^a`` must be closer to the same
    component ``h_i^b`` of the other sample than to its other components ``h_j^b`` (j != i)::

        L_c(a, b) = sum_{i=1..s} -log( exp(cos(h_i^a, h_i^b) / tau) / sum_{j=1..s} exp(cos(h_i^a, h_j^b) / tau) )

    The pairs are all ``n_s = (n_e + 1) n_e / 2`` unordered pairs a < b of the group, computed in
    one batched einsum (no Python loop). Input ``h`` of shape ``(B, n_e + 1, s, w)``; returns the
    mean over the B groups of ``1/(s n_s) * sum_{a<b} L_c(a, b)``.
    """

    def __init__(self, tau: float = 0.5):
        super().__init__()
        self.tau = tau

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 4 or h.shape[1] < 2:
            raise ValueError(f"expected (B, n_e + 1, s, w) with at least 2 samples, got {tuple(h.shape)}")
        b, g, s, _ = h.shape
        h = F.normalize(h, dim=-1)
        a_idx, b_idx = torch.triu_indices(g, g, offset=1, device=h.device)  # the n_s pairs
        logits = torch.einsum("bpiw,bpjw->bpij", h[:, a_idx], h[:, b_idx]) / self.tau  # (B, n_s, s, s)
        target = torch.arange(s, device=h.device).expand(b, len(a_idx), s)
        ce = F.cross_entropy(logits.reshape(-1, s), target.reshape(-1), reduction="none")
        return ce.view(b, -1).mean(dim=1).mean()


class RetrievalLoss(nn.Module):
    """``L_r = lambda * L_e + 1/(s n_s) * sum L_c`` (Alg. 1); ``ert`` / ``ssc`` switch off a term
    (the 'w/o ERT' / 'w/o SSC' ablations of the paper's Table 3)."""

    def __init__(self, tau: float = 0.5, lam: float = 1.0, ert: bool = True, ssc: bool = True):
        super().__init__()
        if not (ert or ssc):
            raise ValueError("both ERT and SSC are off: there is nothing to train")
        self.lam, self.ert, self.ssc = lam, ert, ssc
        self.l_e, self.l_c = ERTLoss(tau), SSCLoss(tau)

    def forward(self, z: torch.Tensor, h: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``z``: search representations ``(B, G, D)``; ``h``: raw sub-vectors ``(B, G, s, w)``."""
        out = {}
        if self.ert:
            out["l_e"] = self.l_e(z)
        if self.ssc:
            if h is None:
                raise ValueError("SSC is on but no sub-vectors were given")
            out["l_c"] = self.l_c(h)
        out["loss"] = self.lam * out.get("l_e", 0.0) + out.get("l_c", 0.0)
        return out
