"""Incremental decoding with one random stream per request (paper Sec. 4.3: nucleus sampling).

:func:`decode` runs :meth:`ELMDModel.start` (prefill, prefix cache included) and then
:meth:`ELMDModel.step` one token at a time for a left-padded batch, until every row has produced
eos or ``max_new_tokens``. Sampling follows transformers' warpers in their order — temperature,
top-k (0 = off), top-p (smallest set of tokens whose probability reaches ``top_p``, at least one
kept) — and draws each row's token with **that row's own** ``torch.Generator``: no process-global
RNG is read or reseeded, so concurrent requests in threads do not disturb each other, and a
request's draws do not depend on the batch it lands in. Greedy decoding takes the argmax.

``forced`` (one token list per row) makes each row start with those tokens (the constrained
emotion decision writes the chosen label word + newline this way); ``logits_hook(step, logits
[B, V]) -> logits`` may edit the scores before the choice; ``on_tokens(step, tokens [B],
finished [B])`` sees every step (streaming).

**The emotion decision** (``generate.emotion``): ``constrained`` (default) scores the label words
after the prompt (:meth:`ELMDModel.label_logprobs`, mean log-probability per token, as stage
rep's validation does), picks one — the best, or under sampling a draw from
softmax(scores / temperature) with the row's generator — and forces it, then the reply is
generated conditioned on it: every reply has an emotion. ``free`` lets the model write the word
and parses it (:func:`elmd.models.prompt.parse_output`), which is the paper's setting; a tiny or
under-trained model then often writes none.
``forced_run`` (a list of ids, a head's ``[IMG1..r]``) is GILL's rule for an added token run
(:class:`ForcedRun`): ids 2..r are never chosen outside a run, and once id 1 is chosen the rest of the
run follows whatever is sampled, so a run is always whole.
With ``output_hidden`` the last-layer hidden state at each new token's position is kept (one more
step after the last token), which is what a training forward over prompt + reply gives there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class DecodeSettings:
    """How to pick tokens (from ``generate.*`` of the config)."""

    max_new_tokens: int
    """Upper bound of generated tokens per row (eos included)."""
    eos_id: int
    """Stops a row."""
    pad_id: int
    """Written after a row's eos."""
    greedy: bool = False
    """Argmax instead of sampling."""
    temperature: float = 1.0
    """Logits are divided by it before sampling."""
    top_p: float = 1.0
    """Nucleus mass kept (1 = all)."""
    top_k: int = 0
    """Keep the k best tokens before top-p (0 = off)."""
    emotion: str = "free"
    """The emotion decision: 'constrained' or 'free' (see the module docstring)."""


@dataclass
class Decoded:
    """A batch's new tokens."""

    tokens: torch.Tensor
    """[B, N] new ids, pad after each row's eos."""
    lengths: list[int]
    """New tokens per row, eos included."""
    hidden: torch.Tensor | None = None
    """[B, N, D] last-layer hidden states at the new tokens' positions (``output_hidden``)."""


def generators_for(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One fresh generator per row, seeded with its request's seed."""
    return [torch.Generator(device=device).manual_seed(int(s) % (2 ** 63)) for s in seeds]


def warp(logits: torch.Tensor, s: DecodeSettings) -> torch.Tensor:
    """Temperature, top-k and top-p on float32 logits [B, V] (removed tokens get -inf)."""
    logits = logits.float()
    if s.temperature != 1.0:
        logits = logits / s.temperature
    if s.top_k > 0 and s.top_k < logits.shape[-1]:
        kth = logits.topk(s.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1)  # ascending, as transformers' TopPLogitsWarper
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum <= 1 - s.top_p
        drop[:, -1] = False  # keep at least the best token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def choose(logits: torch.Tensor, s: DecodeSettings, generators: Sequence[torch.Generator] | None) -> torch.Tensor:
    """Next token per row [B]: argmax (greedy) or a draw from the warped distribution with each row's generator."""
    if s.greedy:
        return logits.argmax(-1)
    probs = warp(logits, s).softmax(-1)
    if generators is None:
        raise ValueError("sampling needs one torch.Generator per row (generators_for(seeds))")
    return torch.cat([torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(generators)])


def pick_labels(scores: torch.Tensor, s: DecodeSettings, generators: Sequence[torch.Generator] | None) -> list[int]:
    """The label of each row from its label scores [B, L]: argmax (greedy), else a draw from
    softmax(scores / temperature) with the row's generator."""
    if s.greedy or generators is None:
        return scores.argmax(-1).tolist()
    probs = (scores.float() / s.temperature).softmax(-1)
    return [int(torch.multinomial(probs[b], 1, generator=g)) for b, g in enumerate(generators)]


def _force(logits: torch.Tensor, forced: Sequence[Sequence[int]], step: int) -> torch.Tensor:
    """Rows whose forced prefix reaches ``step`` get all their mass on that token."""
    rows = [b for b, f in enumerate(forced) if step < len(f)]
    if not rows:
        return logits
    logits = logits.clone()
    for b in rows:
        keep = forced[b][step]
        logits[b] = float("-inf")
        logits[b, keep] = 0.0
    return logits


class ForcedRun:
    """GILL's decoding rule for a run of added tokens (``[IMG1..r]``), applied step by step to a batch.

    :meth:`logits` forbids ids 2..r in rows that are not inside a run (they may only follow id 1);
    :meth:`step` takes the sampled tokens and returns the tokens to emit: a row inside a run emits
    its next run id whatever was sampled.
    """

    def __init__(self, ids: Sequence[int], batch_size: int, device=None):
        self.ids = torch.as_tensor(list(ids), dtype=torch.long, device=device)
        self.pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        """Per row: how many ids of the current run were emitted (0 = not in a run)."""

    @property
    def r(self) -> int:
        return len(self.ids)

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, V] next-token logits with ids 2..r at -inf outside a run."""
        out = logits.clone()
        outside = self.pos == 0
        if self.r > 1 and outside.any():
            rows = outside.nonzero(as_tuple=True)[0]
            out[rows[:, None], self.ids[1:][None].to(out.device)] = float("-inf")
        return out

    def step(self, sampled: torch.Tensor) -> torch.Tensor:
        """Sampled tokens [B] -> emitted tokens [B]; updates the run state."""
        ids, pos = self.ids.to(sampled.device), self.pos.to(sampled.device)
        inside = pos > 0
        out = sampled.clone()
        out[inside] = ids[pos[inside]]
        pos = torch.where(inside, pos + 1, (out == ids[0]).long())
        self.pos = torch.where(pos >= self.r, torch.zeros_like(pos), pos)
        return out


@torch.no_grad()
def decode(model, batch: dict, s: DecodeSettings, generators: Sequence[torch.Generator] | None = None,
           output_hidden: bool = False, logits_hook: Callable | None = None,
           on_tokens: Callable | None = None, forced: Sequence[Sequence[int]] | None = None,
           banned: torch.Tensor | None = None, should_stop: Callable[[int], bool] | None = None,
           prefix_fn: Callable[[torch.Tensor], Sequence[Sequence[int]]] | None = None,
           forced_run: Sequence[int] | None = None) -> Decoded:
    """New tokens for every prompt of ``batch`` (``input_ids``, ``attention_mask``, video inputs);
    ``banned`` (a bool mask [V]) = tokens never chosen (see ``ChatGLMTokenizer.never_generated_ids``);
    ``should_stop(row) -> bool`` is asked each step for the unfinished rows: True ends that row there
    with eos (a cancelled or timed-out request), and decoding stops once every row has ended;
    ``prefix_fn(first_logits [B, V]) -> forced`` decides the forced prefixes from the prefill's
    next-token scores (the emotion decision when every label word is one token: no extra forward);
    ``forced_run``: see :class:`ForcedRun`."""
    out, state = model.start(**batch)
    if prefix_fn is not None:
        forced = prefix_fn(out.logits[:, -1])
    B = batch["input_ids"].shape[0]
    finished = torch.zeros(B, dtype=torch.bool, device=batch["input_ids"].device)
    run = ForcedRun(forced_run, B, finished.device) if forced_run else None
    tokens, hidden = [], []
    for step in range(s.max_new_tokens):
        logits = out.logits[:, -1]
        if banned is not None:
            logits = logits.masked_fill(_widen(banned, logits.shape[-1]), float("-inf"))
        if forced is not None:
            logits = _force(logits, forced, step)
        if logits_hook is not None:
            logits = logits_hook(step, logits)
        if run is not None:
            logits = run.logits(logits)
        nxt = choose(logits, s, generators)
        if run is not None:
            nxt = run.step(nxt)
        nxt = nxt.masked_fill(finished, s.pad_id)
        if should_stop is not None:
            stop = [b for b in range(B) if not finished[b] and should_stop(b)]
            if stop:
                nxt[stop] = s.eos_id
        tokens.append(nxt)
        finished = finished | (nxt == s.eos_id)
        if on_tokens is not None:
            on_tokens(step, nxt, finished)
        if (finished.all() or step == s.max_new_tokens - 1) and not output_hidden:
            break
        out = model.step(state, nxt)
        if output_hidden:
            hidden.append(out.hidden_states[:, -1])
        if finished.all():
            break
    new = torch.stack(tokens, 1) if tokens else batch["input_ids"].new_zeros(B, 0)
    lengths = [_length(row, s.eos_id) for row in new.tolist()]
    return Decoded(new, lengths, torch.stack(hidden, 1) if output_hidden and hidden else None)


def _widen(mask: torch.Tensor, width: int) -> torch.Tensor:
    """``mask`` [n] as [width]: ids past n (LM-head rows no token uses) are masked too."""
    if mask.shape[0] >= width:
        return mask[:width]
    return torch.cat([mask, mask.new_ones(width - mask.shape[0])])


def _length(row: list[int], eos: int) -> int:
    return row.index(eos) + 1 if eos in row else len(row)
