"""The ``[IMG1..r]`` tokens: names, targets, finding the run, training only their rows, forced decoding.

GILL (``gill/models.py``) and PEGS (``pegs_model.py``) append r new tokens to the vocabulary; a
reply that carries a sticker is trained to end its text with the whole run ``[IMG1]..[IMGr]``.
Only the new rows of the input embedding (and of the output head) train while the LLM stays
frozen: PEGS multiplies the other rows' gradients by 0 (``input_embeds_grad_mask``), which
:func:`train_only_rows` does with a gradient hook. At decoding, GILL never samples ``[IMG2..r]``
on their own and, once ``[IMG1]`` is sampled, forces the rest of the run
(:class:`ImgRunForcer` = :class:`elmd.inference.decoding.ForcedRun`), so a run is always whole and its r hidden states can be read.
"""

from __future__ import annotations

from typing import Sequence

import torch

from elmd.inference.decoding import ForcedRun


def img_token_names(r: int) -> list[str]:
    """``["[IMG1]", ..., "[IMGr]"]`` (PEGS's names)."""
    return [f"[IMG{i + 1}]" for i in range(r)]


def img_run_start(token_ids: torch.Tensor, img_ids: Sequence[int]) -> torch.Tensor:
    """Per row of ``token_ids`` [B, T]: the position of the first whole ``[IMG1..r]`` run, or -1."""
    ids = torch.as_tensor(list(img_ids), device=token_ids.device)
    r, (b, t) = len(ids), token_ids.shape
    out = torch.full((b,), -1, dtype=torch.long, device=token_ids.device)
    if t < r:
        return out
    windows = token_ids.unfold(1, r, 1)  # [B, T - r + 1, r]
    whole = (windows == ids).all(dim=-1)
    found = whole.any(dim=1)
    out[found] = whole.float().argmax(dim=1)[found]
    return out


def gather_run(hidden: torch.Tensor, starts: torch.Tensor, r: int) -> torch.Tensor:
    """Hidden states [B, T, D] at each row's run ``starts[b] .. starts[b] + r - 1`` -> [B, r, D] (rows
    with start -1 give zeros: mask them with ``starts >= 0``)."""
    b = hidden.shape[0]
    idx = starts.clamp(min=0)[:, None] + torch.arange(r, device=hidden.device)[None]  # [B, r]
    out = hidden[torch.arange(b, device=hidden.device)[:, None], idx.clamp(max=hidden.shape[1] - 1)]
    return out * (starts >= 0)[:, None, None].to(hidden.dtype)


def train_only_rows(weight: torch.nn.Parameter, rows: Sequence[int]):
    """Make ``weight`` (an embedding or output-head matrix [V, D]) trainable on ``rows`` only: a gradient
    hook zeroes every other row's gradient (PEGS's grad mask). Returns the hook handle. Use no weight decay
    on such a matrix (AdamW would still shrink the frozen rows)."""
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    mask[list(rows)] = 1.0
    weight.requires_grad_(True)
    return weight.register_hook(lambda g: g * mask.to(g.dtype))


ImgRunForcer = ForcedRun
"""GILL's decoding rule for the ``[IMG]`` run (:class:`elmd.inference.decoding.ForcedRun`, which
:func:`~elmd.inference.decoding.decode` applies with ``forced_run``): ``[IMG2..r]`` only inside a run,
and a run once begun is emitted whole."""
