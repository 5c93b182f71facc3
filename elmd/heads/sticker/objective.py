"""Stage `sticker`'s targets and loss (PEGS, Zhang et al., ACL 2024, the training objective of PEGS;
GILL, Koh et al., NeurIPS 2023, Sec. 3): L = λ1·L_lm + λ2·L_ret + λ3·L_gen.

* :func:`append_img_run` writes the ``[IMG1..r]`` run into the training target of a reply that
  carries a sticker: emotion word + newline + response + ``[IMG1..r]`` + eos (GILL / PEGS append the
  run after the text and make all of it a target; ``sticker.run_targets=first`` keeps only ``[IMG1]``
  and the eos: the LLM learns when to start a run, the rest is forced at decoding).
* :class:`StickerObjective` is the loss the training loop's ``loss_fn`` hook calls on one micro-batch.
  Every term is this micro-batch's share of the global batch's mean, so summing over micro-batches
  and ranks gives exactly the single-process value::

      L_lm  = Σ target-token CE / (target tokens of the global batch)           (as stages rep / eerg)
      L_ret = Σ_{replies with a sticker} ret_i / (samples of the global batch)
      L_gen = Σ_{replies with a sticker} gen_i / (samples of the global batch)

  ``ret_i`` is PEGS's retrieval loss of reply i: the text -> image cross-entropy against every
  library sticker (``sticker.ret_negatives=library``) or the symmetric in-batch InfoNCE over the
  micro-batch's sticker replies (``batch``, PEGS's per-GPU batch; not rank-invariant); ``gen_i`` the
  mapper's MSE against the SD text embedding of the gold sticker's caption. Replies without a
  sticker add 0 to both, so L_ret / L_gen are means over all replies (PEGS averages over sticker
  replies: divide λ2, λ3 by the sticker share to match it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from elmd.heads.sticker.tokens import gather_run, img_run_start
from elmd.models.prompt import IGNORE


def append_img_run(encoded: dict, img_ids: list[int], eos_id: int, targets: str = "first") -> dict:
    """A training example (``input_ids`` / ``labels`` / ``video_mask``) with ``img_ids`` inserted in the
    target before its final eos (or at its end when it has none); ``targets="first"`` labels only the
    first of them (the others are IGNORE: forced at decoding, never predicted)."""
    ids, labels, vm = list(encoded["input_ids"]), list(encoded["labels"]), list(encoded["video_mask"])
    at = len(ids) - 1 if labels and labels[-1] == eos_id else len(ids)
    run_labels = img_ids if targets == "all" else img_ids[:1] + [IGNORE] * (len(img_ids) - 1)
    return {**encoded, "input_ids": ids[:at] + img_ids + ids[at:], "labels": labels[:at] + run_labels + labels[at:],
            "video_mask": vm[:at] + [False] * len(img_ids) + vm[at:]}


@dataclass
class StickerTargets:
    """What the objective reads about the library (fixed during training)."""

    vectors: torch.Tensor
    """[N, image_dim] frozen image vectors of the library stickers."""
    sd: torch.Tensor | None = None
    """[N, num_clip_tokens, prompt_dim] SD text embeddings of the stickers' captions (None: no L_gen)."""
    emotions: list[str] | None = None
    """[N] emotion label of each library sticker (for emotion keys)."""


class StickerObjective(nn.Module):
    """``loss_fn(output, batch)`` of stage `sticker` (see the module docstring).

    ``output.logits`` [B, T, V + r] and ``output.hidden_states`` [B, T, D] come from the model (its
    added tokens make it return the hidden states); ``batch`` holds ``input_ids``, ``labels``,
    ``sticker_row`` [B] (library row of the reply's gold sticker, -1 = none), ``global_target_tokens``
    and ``global_samples``. Returns ``{"loss", "lm", "ret", "gen"}``: the three unweighted terms and
    ``loss`` = their λ-weighted sum.
    """

    def __init__(self, modules, img_ids: list[int], targets: StickerTargets):
        super().__init__()
        from elmd.training.loop import TargetTokenLoss

        self.modules_, self.img_ids, self.targets = modules, list(img_ids), targets
        self.lm = TargetTokenLoss()

    def forward(self, output, batch: dict) -> dict[str, torch.Tensor]:
        cfg, mods = self.modules_.cfg, self.modules_
        lm = self.lm(output.logits, batch["labels"]) / batch["global_target_tokens"]
        rows = batch["sticker_row"]
        starts = img_run_start(batch["input_ids"], self.img_ids)
        has = (rows >= 0) & (starts >= 0)
        hidden = output.hidden_states
        img_h = gather_run(hidden, starts, len(self.img_ids))  # [B, r, D]
        safe = rows.clamp(min=0).cpu()
        vectors = self.targets.vectors[safe].to(hidden.device)
        sd = self.targets.sd[safe].to(hidden.device) if self.targets.sd is not None and mods.mapper is not None else None
        lib_emotions = self.targets.emotions
        parts = mods.losses(img_h, vectors, has, sd, self.targets.vectors.to(hidden.device), rows.clamp(min=0),
                            None if lib_emotions is None else [lib_emotions[i] for i in safe.tolist()], lib_emotions)
        share = parts.n / batch["global_samples"]
        ret, gen = parts.ret * share, parts.gen * share
        return {"loss": cfg.lambda_lm * lm + cfg.lambda_ret * ret + cfg.lambda_gen * gen, "lm": lm, "ret": ret, "gen": gen}


def sticker_rows(samples, stickers: dict[str, dict], library, source: str) -> list[int]:
    """Library row of each sample's gold reply sticker (-1 = none); a sticker id missing from the library
    is a one-line DataError naming ``source`` (the dialogue file)."""
    from elmd.errors import DataError

    rows = []
    for s in samples:
        st = stickers.get(s.sample_id)
        if st is None:
            rows.append(-1)
            continue
        pos = library.positions([st["id"]])
        if not pos:
            raise DataError(source, f"sample {s.sample_id}: sticker '{st['id']}' is not in the library {library.folder}",
                            "attach stickers from the library's stickers.jsonl (`elmd sticker attach`) or rebuild the library")
        rows.append(pos[0])
    return rows
