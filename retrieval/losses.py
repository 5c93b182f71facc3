"""Losses of the Emotional Retrieval Module (paper Sec. 3.3, Eq. 2 and Eq. 4) and the emotion head.

A training *group* holds ``n_e + 1`` samples: the anchor utterance (index 0), one positive with the
same emotion (index 1) and ``n_e - 1`` negatives with other emotions (indices 2..n_e).

**Why L_e sat at ln 2 with SSC on (issue 13).** Eq. 4 read literally rewards component i of
every sample being the same vector: sub-vectors that are a per-component constant (independent of
the input, mutually far apart) reach the minimum of L_c (0.19 for s = 4, tau = 0.5) within a few
dozen steps, and then every search representation is the same vector, cos(z_a, z_+) =
cos(z_a, z_-) = 1 and L_e = ln 2 with no gradient. :class:`SSCLoss` therefore centres the
sub-vectors over the batch before the cosines (``center=True``, the default in
:class:`RetrievalLoss`): a constant offset is then invisible to L_c, and the trivial solution is
gone.
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

    ``in_batch=True`` (an option, not the paper's): the negatives of an anchor are every item of
    the batch (all groups) whose emotion differs from the anchor's, across all classes; pass the
    ``(B, n_e + 1)`` emotion ids.
    """

    def __init__(self, tau: float = 0.5, in_batch: bool = False):
        super().__init__()
        self.tau, self.in_batch = tau, in_batch

    def forward(self, z: torch.Tensor, emotions: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 3 or z.shape[1] < 2:
            raise ValueError(f"expected (B, n_e + 1, D) with n_e >= 1, got {tuple(z.shape)}")
        z = F.normalize(z, dim=-1)
        if self.in_batch:
            return self._in_batch(z, emotions)
        logits = torch.einsum("bd,bjd->bj", z[:, 0], z[:, 1:]) / self.tau  # (B, n_e)
        target = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)  # the positive
        return F.cross_entropy(logits, target)

    def _in_batch(self, z: torch.Tensor, emotions: torch.Tensor | None) -> torch.Tensor:
        if emotions is None or emotions.shape != z.shape[:2]:
            raise ValueError("in-batch negatives need the (B, n_e + 1) emotion ids of the group items")
        b, g, _ = z.shape
        flat, emo = z.reshape(b * g, -1), emotions.reshape(-1)
        logits = z[:, 0] @ flat.T / self.tau  # (B, B*G): anchor vs every item
        positive = torch.arange(b, device=z.device) * g + 1
        negative = emo[None, :] != emotions[:, :1]  # other emotions only
        keep = negative.clone()
        keep[torch.arange(b, device=z.device), positive] = True
        return F.cross_entropy(logits.masked_fill(~keep, float("-inf")), positive)


class SSCLoss(nn.Module):
    """Self-separated contrastive term (Alg. 1, Eq. 4): ``1/(s n_s) * sum_pairs L_c``.

    For a pair (a, b) of samples of a group, each sub-vector ``h_i^a`` must be closer to the same
    component ``h_i^b`` of the other sample than to its other components ``h_j^b`` (j != i)::

        L_c(a, b) = sum_{i=1..s} -log( exp(cos(h_i^a, h_i^b) / tau) / sum_{j=1..s} exp(cos(h_i^a, h_j^b) / tau) )

    The pairs are all ``n_s = (n_e + 1) n_e / 2`` unordered pairs a < b of the group, computed in
    one batched einsum (no Python loop). Input ``h`` of shape ``(B, n_e + 1, s, w)``; returns the
    mean over the B groups of ``1/(s n_s) * sum_{a<b} L_c(a, b)``.

    ``center=True`` subtracts each component's mean over the batch (all B * (n_e + 1) samples)
    before the cosines, which removes the collapsed minimum (module docstring); ``False`` is Eq. 4
    verbatim.
    """

    def __init__(self, tau: float = 0.5, center: bool = False):
        super().__init__()
        self.tau, self.center = tau, center

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 4 or h.shape[1] < 2:
            raise ValueError(f"expected (B, n_e + 1, s, w) with at least 2 samples, got {tuple(h.shape)}")
        b, g, s, _ = h.shape
        if self.center:
            h = h - h.mean(dim=(0, 1), keepdim=True)
        h = F.normalize(h, dim=-1)
        a_idx, b_idx = torch.triu_indices(g, g, offset=1, device=h.device)  # the n_s pairs
        logits = torch.einsum("bpiw,bpjw->bpij", h[:, a_idx], h[:, b_idx]) / self.tau  # (B, n_s, s, s)
        target = torch.arange(s, device=h.device).expand(b, len(a_idx), s)
        ce = F.cross_entropy(logits.reshape(-1, s), target.reshape(-1), reduction="none")
        return ce.view(b, -1).mean(dim=1).mean()


class EmotionLoss(nn.Module):
    """Cross-entropy of the emotion head (issue 13): ``-w_y log P(y | u)`` averaged with weights
    ``w``; ``class_weights`` (C,) = inverse class frequency for the class-balanced option, else 1."""

    def __init__(self, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.class_weights.to(logits.dtype) if self.class_weights is not None else None
        return F.cross_entropy(logits, target, weight=w)


def balanced_weights(targets, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``N / (C * n_c)`` (1 on average over samples); unseen classes get 0."""
    counts = torch.bincount(torch.as_tensor(targets, dtype=torch.long), minlength=n_classes).float()
    return torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))


class RetrievalLoss(nn.Module):
    """``L_r = lambda * L_e + 1/(s n_s) * sum L_c (+ mu * L_emo)`` (Alg. 1); ``ert`` / ``ssc`` switch
    off a term (the 'w/o ERT' / 'w/o SSC' ablations of the paper's Table 3); ``emotion`` adds the
    emotion head's cross-entropy with weight ``mu`` (issue 13, part of ERT: off with ``ert``)."""

    def __init__(self, tau: float = 0.5, lam: float = 1.0, ert: bool = True, ssc: bool = True,
                 in_batch: bool = False, center: bool = True, emotion: EmotionLoss | None = None, mu: float = 1.0):
        super().__init__()
        if not (ert or ssc):
            raise ValueError("both ERT and SSC are off: there is nothing to train")
        self.lam, self.ert, self.ssc, self.mu = lam, ert, ssc, mu
        self.l_e, self.l_c = ERTLoss(tau, in_batch), SSCLoss(tau, center)
        self.l_emo = emotion if ert else None

    def forward(self, z: torch.Tensor, h: torch.Tensor | None = None, emotions: torch.Tensor | None = None,
                logits: torch.Tensor | None = None, extra: tuple | None = None) -> dict[str, torch.Tensor]:
        """``z``: search representations ``(B, G, D)``; ``h``: raw sub-vectors ``(B, G, s, w)``;
        ``emotions``: ``(B, G)`` class ids; ``logits``: the emotion head's ``(B*G, C)``; ``extra``:
        ``(logits (M, C), class ids (M,))`` of further labelled texts for the emotion head."""
        out = {}
        if self.ert:
            out["l_e"] = self.l_e(z, emotions)
        if self.ssc:
            if h is None:
                raise ValueError("SSC is on but no sub-vectors were given")
            out["l_c"] = self.l_c(h)
        if self.l_emo is not None and logits is not None:
            target = emotions.reshape(-1)
            if extra is not None:  # more labelled texts for the emotion head only
                logits, target = torch.cat([logits, extra[0]]), torch.cat([target, extra[1]])
            out["l_emo"] = self.l_emo(logits, target)
        out["loss"] = self.lam * out.get("l_e", 0.0) + out.get("l_c", 0.0) + self.mu * out.get("l_emo", 0.0)
        return out
