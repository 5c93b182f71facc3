"""The ELMD model (paper Sec. 3.4-3.5, Fig. 2): frozen ChatGLM2 + trainable video projector (+ prefix).

The prompt's token embeddings (:mod:`elmd.models.prompt`) get the video tokens
E_v = Linear([V_t; V_s]) (:class:`elmd.models.pooling.VideoProjector`) spliced into their
placeholder positions (:func:`elmd.models.splice.splice_video`); the frozen LLM then gives the
next-token loss on the target (emotion word, and in stage eerg the response). Position ids count
real tokens only, so left padding does not change a sample's result (the same rule that
``generate`` applies).

Stage ``eerg`` (Eq. 11) adds a p-tuning v2 prefix (:mod:`elmd.models.prefix`, :meth:`ELMDModel.attach_prefix`):
its P keys/values per layer are the LLM's initial cache, the attention mask gets P ones on the left
and the position ids still count the real tokens only (as ChatGLM2's p-tuning v2). ``generate`` feeds
the same cache to ``GlmForCausalLM.generate`` together with P dummy embeddings and dummy positions
in front of the prompt: generate drops the first ``cache length`` embeddings of ``inputs_embeds``
(it takes them for tokens already in the cache), so without the dummies it would silently drop the
first P prompt embeddings.

A head may append tokens after the LLM's vocabulary (:meth:`ELMDModel.attach_tokens`, the sticker
head's ``[IMG1..r]``, GILL / PEGS): :class:`AddedTokens` holds their input-embedding and output-head
rows as separate trainable tensors, so the LLM's own rows stay frozen and only the new rows are saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elmd.errors import ElmdError
from elmd.models.config import PrefixConfig
from elmd.models.glm import freeze
from elmd.models.prefix import PrefixEncoder, extend_attention_mask, real_positions
from elmd.models.splice import splice_video

IGNORE = -100


@dataclass
class ELMDOutput:
    """What :meth:`ELMDModel.forward` / :meth:`ELMDModel.start` / :meth:`ELMDModel.step` return."""

    logits: torch.Tensor
    """[B, T, vocab] (``start`` / ``step``: the last position only, [B, 1, vocab])."""
    loss: torch.Tensor | None = None
    """Mean next-token cross-entropy over the target positions (labels != -100), when labels are given."""
    hidden_states: torch.Tensor | None = None
    """Last-layer hidden states [B, T, D] (after the final norm), when ``output_hidden_states``."""


@dataclass
class ELMDGeneration:
    """:meth:`ELMDModel.generate` with ``output_hidden_states=True``."""

    sequences: torch.Tensor
    """New token ids [B, N] (pad after eos)."""
    hidden_states: torch.Tensor
    """Last-layer hidden states at the positions of the new tokens [B, N, D] (as a training forward
    over prompt + new tokens gives them)."""


@dataclass
class DecodeState:
    """The running state of incremental decoding (:meth:`ELMDModel.start` / :meth:`ELMDModel.step`)."""

    cache: object
    """transformers ``Cache`` holding the prefix (if any), the prompt and the tokens fed so far."""
    attention_mask: torch.Tensor
    """[B, P + T + steps]: prefix ones, the prompt's mask, one 1 per fed token."""
    next_position: torch.Tensor
    """[B] position id of the next token fed (real tokens counted, prefix not)."""


class AddedTokens(nn.Module):
    """Rows of ``n`` tokens appended after the LLM's vocabulary: ids ``first_id .. first_id + n - 1``.

    :attr:`input_rows` [n, D] are their input embeddings, :attr:`output_rows` [n, D] their output-head
    rows (logit of token ``first_id + i`` = hidden @ output_rows[i]). PEGS trains such rows by masking
    the gradient of the whole resized matrices; separate tensors give the same training without
    touching (or saving) the frozen rows. The input parameter holds its rows in units of the LLM's
    own embedding scale (std of its matrix), so one learning rate, sized for a head's projections,
    moves them no faster relative to their size than the LLM's rows would move: otherwise they soon
    outgrow the LLM's rows and the hidden states at their positions stop depending on the context.
    The output rows only decide the tokens' logits and train in plain units.
    Initialised from the mean of the LLM's rows plus small seeded noise.
    """

    def __init__(self, n: int, first_id: int, embedding: torch.Tensor, head: torch.Tensor, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.first_id = first_id
        for name, w in (("input", embedding), ("output", head)):
            w = w.detach().float().cpu()
            scale = max(w.std().item(), 1e-8) if name == "input" else 1.0
            init = w.mean(0, keepdim=True) + torch.randn(n, w.shape[1], generator=g) * w.std().item() * 0.1
            self.register_buffer(f"{name}_scale", torch.tensor(scale), persistent=False)
            self.register_parameter(name, nn.Parameter(init / scale))

    @property
    def input_rows(self) -> torch.Tensor:
        return self.input * self.input_scale

    @property
    def output_rows(self) -> torch.Tensor:
        return self.output * self.output_scale

    @property
    def ids(self) -> list[int]:
        return list(range(self.first_id, self.first_id + self.input.shape[0]))


class ELMDModel(nn.Module):
    """``llm`` (a frozen ``GlmForCausalLM``) + ``projector`` (trainable, q -> hidden) + optional ``prefix``
    (+ optional ``added_tokens``, a head's tokens after the vocabulary)."""

    def __init__(self, llm: nn.Module, projector: nn.Module, prefix: PrefixEncoder | None = None):
        super().__init__()
        self.llm = freeze(llm)
        self.projector = projector
        self.register_module("prefix", prefix)
        self.register_module("added_tokens", None)

    def attach_tokens(self, n: int, seed: int = 0) -> AddedTokens:
        """Append ``n`` trainable tokens after the vocabulary (ids from the embedding's size on); returns them."""
        emb, head = self.llm.get_input_embeddings().weight, self.llm.lm_head.weight
        if emb.shape[0] != head.shape[0]:
            raise ElmdError(f"the LLM's input embedding ({emb.shape[0]} rows) and output head ({head.shape[0]}) differ in size")
        self.added_tokens = AddedTokens(n, emb.shape[0], emb, head, seed).to(emb.device)
        return self.added_tokens

    def _embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, T, D]; added tokens' ids read their own rows."""
        table = self.llm.get_input_embeddings()
        if self.added_tokens is None:
            return table(input_ids)
        a = self.added_tokens
        added = input_ids >= a.first_id
        embeds = table(input_ids.masked_fill(added, 0))
        rows = a.input_rows[(input_ids - a.first_id).clamp(0, a.input.shape[0] - 1)].to(embeds.dtype)
        return torch.where(added[..., None], rows, embeds)

    def attach_prefix(self, cfg: PrefixConfig, seed: int | None = None) -> PrefixEncoder:
        """Add a fresh p-tuning v2 prefix (stage eerg), float32, on the LLM's device; returns it.

        ``seed`` makes the init reproducible: ``model.attach_prefix(cfg.prefix, seed=cfg.train.seed)``.
        """
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            prefix = PrefixEncoder.for_llm(self.llm.config, cfg)
        self.prefix = prefix.to(self.llm.get_input_embeddings().weight.device)
        return self.prefix

    def _prefix_inputs(self, embeds: torch.Tensor, attention_mask: torch.Tensor, rows: int | None = None):
        """(cache, attention mask [B, P + T]) of the prefix; (None, mask) without one."""
        if self.prefix is None:
            return None, attention_mask
        cache = self.prefix.cache(rows or embeds.shape[0], self.llm.config, embeds.dtype)
        return cache, extend_attention_mask(attention_mask, self.prefix.pre_seq_len)

    def embed(self, input_ids, video_mask=None, video_feats=None, video_present=None) -> torch.Tensor:
        """Prompt embeddings [B, T, D] with the video tokens spliced in (video_feats [B, m, Q, q])."""
        embeds = self._embed_ids(input_ids)  # [B, T, D]
        if video_mask is None or not video_mask.any():
            return embeds
        if video_feats is None:
            raise ValueError("the batch has video positions but no video_feats were given")
        if video_present is not None and not torch.equal(video_present.bool(), video_mask.any(dim=1)):
            raise ValueError("video_present does not match the rows of video_mask that hold video positions")
        video_embeds = self.projector(video_feats)  # [B, m + Q, D]
        return splice_video(embeds, video_mask, video_embeds)

    def _run(self, embeds, mask, positions, cache, last_only: bool = False):
        """Decoder + LM head: (logits, last-layer hidden [B, T, D]); ``last_only`` = logits of the last position."""
        hidden = self.llm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                cache=cache, use_cache=cache is not None).last_hidden_state
        h = hidden[:, -1:] if last_only else hidden
        logits = self.llm.lm_head(h)
        if self.added_tokens is not None:  # the added tokens' logits after the vocabulary's
            logits = torch.cat([logits, h @ self.added_tokens.output_rows.t().to(h.dtype)], -1)
        return logits, hidden

    def forward(self, input_ids, attention_mask, labels=None, video_feats=None, video_present=None,
                video_mask=None, output_hidden_states: bool = False) -> ELMDOutput:
        """Logits [B, T, vocab] of the frozen LLM on the spliced prompt (+ loss when ``labels``); the
        hidden states come back when ``output_hidden_states`` or when tokens were added (a head reads them)."""
        embeds = self.embed(input_ids, video_mask, video_feats, video_present)
        positions = real_positions(attention_mask)  # [B, T], 0 on left padding, prefix not counted
        cache, mask = self._prefix_inputs(embeds, attention_mask)
        logits, hidden = self._run(embeds, mask, positions, cache)
        loss = None
        if labels is not None:
            shifted = labels[:, 1:]
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                   ignore_index=IGNORE)
        return ELMDOutput(logits, loss, hidden if output_hidden_states or self.added_tokens is not None else None)

    @torch.no_grad()
    def start(self, input_ids, attention_mask, video_feats=None, video_present=None, video_mask=None,
              rows_per_prompt: int = 1) -> tuple[ELMDOutput, DecodeState]:
        """Prefill: the prompt through the LLM with a cache (holding the prefix first, if any).

        Returns the last position's logits [B, 1, V] and hidden state, and the :class:`DecodeState`
        that :meth:`step` continues. Same math as :meth:`forward` at the last prompt position.
        """
        if rows_per_prompt > 1:
            expand = lambda t: None if t is None else t.repeat_interleave(rows_per_prompt, 0)  # noqa: E731
            input_ids, attention_mask, video_mask = map(expand, (input_ids, attention_mask, video_mask))
            video_feats, video_present = expand(video_feats), expand(video_present)
        embeds = self.embed(input_ids, video_mask, video_feats, video_present)
        positions = real_positions(attention_mask)
        cache, mask = self._prefix_inputs(embeds, attention_mask)
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.llm.config)
        logits, hidden = self._run(embeds, mask, positions, cache, last_only=True)
        state = DecodeState(cache, mask, positions[:, -1] + 1)
        return ELMDOutput(logits, None, hidden[:, -1:]), state

    @torch.no_grad()
    def step(self, state: DecodeState, tokens: torch.Tensor) -> ELMDOutput:
        """Feed one token per row (``tokens`` [B]); returns its logits [B, 1, V] and hidden state [B, 1, D]."""
        embeds = self._embed_ids(tokens[:, None])
        state.attention_mask = torch.cat([state.attention_mask, state.attention_mask.new_ones(len(tokens), 1)], 1)
        positions = state.next_position[:, None]
        logits, hidden = self._run(embeds, state.attention_mask, positions, state.cache)
        state.next_position = state.next_position + 1
        return ELMDOutput(logits, None, hidden)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, video_feats=None, video_present=None, video_mask=None,
                 output_hidden_states: bool = False, **kwargs):
        """New token ids [B, N] continuing each prompt with transformers' ``generate`` (``kwargs``:
        greedy, ``do_sample`` / ``top_p`` / ``temperature``, ``return_dict_in_generate`` ...).

        With a prefix, ``llm.generate`` gets the prefix cache, the mask extended by P, and P dummy
        embeddings + dummy positions in front (generate skips as many leading embeddings as the cache
        holds), so its first step is exactly :meth:`forward` at the last prompt position.
        ``output_hidden_states=True`` returns an :class:`ELMDGeneration` instead (sequences + the
        hidden states at the new tokens' positions, from one forward over prompt + new tokens).
        """
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None or kwargs.get("position_ids") is not None:
            raise ValueError("ELMDModel.generate builds the cache and position_ids itself")
        if self.added_tokens is not None:
            raise ValueError("a model with added tokens decodes with elmd.inference.decoding.decode (start / step)")
        embeds = self.embed(input_ids, video_mask, video_feats, video_present)
        if self.prefix is None:
            new = self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        else:
            B, P = embeds.shape[0], self.prefix.pre_seq_len
            cache, mask = self._prefix_inputs(embeds, attention_mask, B * self._expand_size(kwargs))
            dummy = embeds.new_zeros(B, P, embeds.shape[-1])  # sliced off by generate, never computed
            real = real_positions(attention_mask)
            positions = torch.cat([real.new_zeros(B, P), real], 1)  # dummy positions, also sliced off
            new = self.llm.generate(inputs_embeds=torch.cat([dummy, embeds], 1), attention_mask=mask,
                                    position_ids=positions, cache=cache, **kwargs)
        if not output_hidden_states:
            return new
        seqs = new.sequences if hasattr(new, "sequences") else new
        if seqs.shape[0] != input_ids.shape[0]:
            raise ValueError("output_hidden_states=True needs one sequence per prompt (no beams / num_return_sequences)")
        ids = torch.cat([input_ids, seqs], 1)
        mask = torch.cat([attention_mask, torch.ones_like(seqs)], 1)
        vm = None if video_mask is None else torch.cat([video_mask, torch.zeros_like(seqs, dtype=torch.bool)], 1)
        out = self(ids, mask, None, video_feats, video_present, vm, output_hidden_states=True)
        return ELMDGeneration(seqs, out.hidden_states[:, -seqs.shape[1]:])

    def _expand_size(self, kwargs: dict) -> int:
        """Rows per prompt inside generate (beams / returned sequences): the cache must have them."""
        gc = kwargs.get("generation_config") or self.llm.generation_config
        beams = kwargs.get("num_beams") or getattr(gc, "num_beams", 1) or 1
        seqs = kwargs.get("num_return_sequences") or getattr(gc, "num_return_sequences", 1) or 1
        return max(beams, seqs)

    @torch.no_grad()
    def label_logprobs(self, input_ids, attention_mask, label_ids: list[list[int]], video_feats=None,
                       video_present=None, video_mask=None, reduction: str = "mean") -> torch.Tensor:
        """Scores [B, L] of each label word after the prompt: the **mean** log-probability of its tokens
        (``reduction="mean"``, default) or their sum = log P(word | prompt) (``"sum"``).

        The mean puts words of different token counts on an equal footing: with the sum, a word
        that happens to be one token beats a two-token word whenever the model is unsure, a bias
        that ChatGLM2-6B's tokenizer has too wherever the label words differ in length. Stage rep's
        validation and the constrained emotion decision take the argmax of these scores."""
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction '{reduction}' — use mean or sum")
        B, scores = input_ids.shape[0], []
        vm = video_mask if video_mask is not None else torch.zeros_like(input_ids, dtype=torch.bool)
        for ids in label_ids:
            word = torch.tensor(ids, device=input_ids.device).expand(B, -1)  # [B, n]
            logits = self(torch.cat([input_ids, word], 1), torch.cat([attention_mask, torch.ones_like(word)], 1),
                          None, video_feats, video_present, torch.cat([vm, torch.zeros_like(word, dtype=torch.bool)], 1)).logits
            logp = logits[:, -len(ids) - 1:-1].float().log_softmax(-1)  # [B, n, vocab]
            token_logp = logp.gather(-1, word.unsqueeze(-1)).squeeze(-1)  # [B, n]
            scores.append(token_logp.mean(-1) if reduction == "mean" else token_logp.sum(-1))
        return torch.stack(scores, dim=1)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters that training changes (those with gradients; the frozen LLM is not saved)."""
        return {k: p.detach() for k, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> list[str]:
        """Load tensors saved by :meth:`trainable_state_dict`; returns the trainable names not in ``state``.

        ``strict`` (default) requires every trainable tensor (e.g. a prefix attached before loading);
        ``strict=False`` loads a subset, e.g. the rep stage's video Linear into an eerg model.
        Unknown names or other shapes always raise ElmdError.
        """
        own = dict(self.named_parameters())
        trainable = {k for k, p in own.items() if p.requires_grad}
        unknown = sorted(set(state) - trainable)
        if unknown:
            hint = " — attach the prefix first (stage eerg)" if any(k.startswith("prefix.") for k in unknown) else ""
            raise ElmdError(f"trainable state has tensors this model does not train: {unknown[:4]}{hint}")
        missing = sorted(trainable - set(state))
        if strict and missing:
            raise ElmdError(f"trainable state lacks {missing[:4]} — was it saved by another stage or prefix setting?")
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ElmdError(f"trainable tensor '{k}' has shape {tuple(v.shape)}, the model {tuple(own[k].shape)} "
                                "— check prefix.pre_seq_len / prefix.* and the model preset")
            with torch.no_grad():
                own[k].copy_(v.to(own[k].dtype))
        return missing
