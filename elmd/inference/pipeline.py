"""Answering turns with a trained run (paper Fig. 2 at inference): ``load(run_dir).respond(u)``.

    from elmd.inference import load
    pipe = load("runs/sample/eerg")                 # any working directory
    reply = pipe.respond("你回来啦", video="clip.mp4")
    reply.emotion, reply.emotion_word, reply.demonstration, reply.response

One :class:`Pipeline` holds what answering needs, loaded once: the model and tokenizer of the
folder's stage, its label set, the demonstration index (when the run used demonstrations) and the
video feature store. A turn goes: retrieve part R for u (hits of the same dialogue excluded) ->
six-part prompt (:func:`elmd.models.prompt.encode_prompt`) -> left-padded batch with the video
features -> :func:`elmd.inference.decoding.decode` with one generator per request -> emotion word
and response (:func:`elmd.models.prompt.parse_output`) -> the heads (``reply.extras``).
:meth:`Pipeline.respond_batch` does this for many requests with one retrieval and one decode per
group of equal decoding settings.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from elmd.data.schema import Sample, Turn
from elmd.inference.decoding import DecodeSettings, decode, generators_for
from elmd.inference.reply import Reply, Request
from elmd.stages import StageSpec


def request_seed(seed: int, key: str) -> int:
    """A request's seed from the run seed and a stable key (a sample id): ``seed + crc32(key)``."""
    return (seed + zlib.crc32(key.encode("utf-8"))) % (2 ** 31)


def request_of(sample: Sample, seed: int | None = None) -> Request:
    """The :class:`Request` that answers a data sample (its history, utterance, video, background)."""
    u = sample.utterance
    return Request(u.text, tuple(sample.history), u.video, sample.background, seed, sample.sample_id,
                   sample.dialogue_id, u.speaker, sample.response.speaker)


def sample_of(request: Request) -> Sample:
    """A request as the unlabelled sample the prompt encoder reads."""
    return Sample(sample_id=request.sample_id or "request", dialogue_id=request.dialogue_id, series="",
                  background=request.background, history=list(request.history),
                  utterance=Turn(request.speaker, request.utterance, None, request.video),
                  response=Turn(request.responder, "", None))


@dataclass
class Pipeline:
    """A loaded run, ready to answer (build it with :func:`load`)."""

    cfg: object
    folder: Path
    meta: dict
    spec: StageSpec
    model: torch.nn.Module | None
    tokenizer: object
    labels: object
    index: object = None
    store: object = None
    heads: list = field(default_factory=list)
    media_dir: Path | None = None
    video_transform: Callable | None = None
    """``(feats [B, m, Q, q], requests) -> feats``: changes a batch's video features (single-frame baseline)."""
    keep_ids: tuple[int, ...] = ()
    """Special ids replies may contain after all (a head's added tokens, e.g. [IMG1..r])."""
    forced_run: tuple[int, ...] = ()
    """Added tokens decoded as one run (GILL: once the first is chosen the rest follow; :class:`ForcedRun`)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_video(self) -> int:
        from elmd.resources import video_tokens

        return video_tokens(self.cfg)

    @property
    def target(self) -> str:
        """The prompt target the run was trained on (``train.target=meta``: the meta-response block)."""
        from elmd.stages import run_target

        return run_target(self.spec.name, getattr(self.cfg.train, "target", "reply"))

    def settings(self, request: Request | None = None) -> DecodeSettings:
        """Decoding settings of ``request``: the config's ``generate.*`` with the request's overrides."""
        g = self.cfg.generate
        r = request or Request("")
        pick = lambda v, d: d if v is None else v  # noqa: E731
        return DecodeSettings(max_new_tokens=pick(r.max_new_tokens, g.max_new_tokens), eos_id=self.tokenizer.eos_id,
                              pad_id=self.tokenizer.pad_id, greedy=pick(r.greedy, g.greedy),
                              temperature=pick(r.temperature, g.temperature), top_p=pick(r.top_p, g.top_p),
                              emotion=g.emotion)

    def search(self, requests: Sequence[Request]) -> list:
        """Top hit of each request's utterance (same-dialogue entries excluded), or None."""
        if self.index is None or not requests:
            return [None] * len(requests)
        hits = self.index.search([r.utterance for r in requests], 1, [r.dialogue_id or None for r in requests],
                                 batch_size=self.cfg.retrieval.encode_batch_size,
                                 histories=[(r.history, r.speaker) for r in requests])  # dialogue context of P(e | q)
        return [h[0] if h else None for h in hits]

    def demonstrations(self, requests: Sequence[Request]) -> list[str]:
        """Part R of each request's prompt ('' when the run uses no demonstrations or nothing was found)."""
        if not self.cfg.prompt.use_demonstration:
            return [""] * len(requests)
        from retrieval.demonstration import format_demonstration

        return [format_demonstration(h, self.labels) for h in self.search(requests)]

    def encode(self, request: Request, demonstration: str) -> dict:
        """The prompt (no target) of ``request``: ``input_ids`` and ``video_mask`` lists."""
        from elmd.models.prompt import encode_prompt

        return encode_prompt(sample_of(request), demonstration, self.tokenizer, self.labels, self.spec.name,
                             self.n_video, self.cfg.prompt, target=self.target)

    def batch(self, encoded: list[dict], requests: Sequence[Request]) -> dict:
        """Left-padded tensors (with video features where a prompt has video positions) on the device."""
        from elmd.models.prompt import collate

        batch = collate(encoded, self.tokenizer.pad_id)
        if self.store is not None and batch["video_mask"].any():
            feats = self.store([r.video if any(e["video_mask"]) else None for r, e in zip(requests, encoded)])
            if self.video_transform is not None:
                feats = self.video_transform(feats, requests)
            batch["video_feats"] = feats
        return {k: v.to(self.device) for k, v in batch.items()}

    def check_video(self, path: str) -> None:
        """Decode and encode ``path`` now (its features are then cached); a missing, corrupt or
        unsupported file, or a run without video tokens, raises a one-line ElmdError."""
        from elmd.errors import ElmdError

        if self.store is None:
            raise ElmdError("this run has no video tokens (trained with vision.use_video=false) — the video is not used")
        if not Path(path).is_file():
            raise ElmdError(f"{path}: no such video file")
        try:
            self.store([str(path)])
        except ElmdError:
            raise
        except Exception as e:  # decoders raise their own types on corrupt input
            raise ElmdError(f"{path}: cannot be decoded as a video ({type(e).__name__}: {str(e).splitlines()[0][:120]}) "
                            "— use an mp4/avi/mkv file") from None

    def respond(self, utterance: str, history=(), video: str | None = None, background: str = "",
                seed: int | None = None, **request) -> Reply:
        """Answer one turn (see :class:`~elmd.inference.reply.Request` for the other fields)."""
        return self.respond_batch([Request(utterance, tuple(history), video, background, seed, **request)])[0]

    def respond_batch(self, requests: Sequence[Request], demonstrations: Sequence[str] | None = None,
                      output_hidden: bool = False, on_token: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[int], bool] | None = None) -> list[Reply]:
        """Answer many turns: one retrieval, then one batched decode per group of equal settings.

        ``on_token(i, token_id)`` is called for every token request ``i`` generates, as it is
        generated (eos included; streaming: decode the ids so far with ``self.tokenizer``);
        ``should_stop(i)`` is asked at every step: True ends request ``i`` there (its client left)."""
        requests = list(requests)
        output_hidden = output_hidden or any(getattr(h, "needs_hidden", False) for h in self.heads)
        demos = list(demonstrations) if demonstrations is not None else self.demonstrations(requests)
        replies: list[Reply | None] = [None] * len(requests)
        groups: dict[DecodeSettings, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(self.settings(r), []).append(i)
        for settings, idx in groups.items():
            hook = _token_hook(on_token, idx) if on_token is not None else None
            stop = (lambda b, idx=idx: should_stop(idx[b])) if should_stop is not None else None
            outs = self._decode([requests[i] for i in idx], [demos[i] for i in idx], settings, output_hidden, hook, stop)
            for i, reply in zip(idx, outs):
                replies[i] = reply
        for head in self.heads:
            head.apply(replies, requests, self._media())
        return replies

    def _decode(self, requests, demos, settings: DecodeSettings, output_hidden: bool, on_tokens=None,
                should_stop=None) -> list[Reply]:
        from elmd.models.prompt import parse_output

        encoded = [self.encode(r, d) for r, d in zip(requests, demos)]
        batch = self.batch(encoded, requests)
        seeds = [self.cfg.generate.seed if r.seed is None else r.seed for r in requests]
        gens = None if settings.greedy else generators_for(seeds, self.device)
        if settings.emotion == "constrained" and not self.spec.generates_response:  # stage rep: the decision is all
            picks = self._decide_emotions(batch, settings, gens)
            return [Reply(self.labels.ids[p], self.labels.word(self.labels.ids[p]), "", d,
                          self.labels.word(self.labels.ids[p])) for p, d in zip(picks, demos)]
        out, picks = self.decode_batch(batch, settings, gens, output_hidden=output_hidden, on_tokens=on_tokens,
                                       should_stop=should_stop)
        replies = []
        for b, (row, n) in enumerate(zip(out.tokens.tolist(), out.lengths)):
            ids = [t for t in row[:n] if t != settings.eos_id]
            text = self.tokenizer.decode(ids)
            emotion, response = parse_output(text, self.labels) if self.spec.generates_response else \
                (self.labels.from_word(text.strip()), "")
            extras = {}
            if self.target == "meta":  # strict parse into extras["meta"]; a failure leaves response "" (counted)
                extras["meta"], emotion, response = _parse_meta_block(text, self.labels, emotion)
            if picks is not None:
                emotion = self.labels.ids[picks[b]]  # the decided label (its word opens the text)
            hidden = out.hidden[b, :n].cpu() if out.hidden is not None else None
            replies.append(Reply(emotion, self.labels.word(emotion) if emotion else "", response, demos[b], text, n,
                                 row[:n], hidden, extras=extras, prompt_tokens=len(encoded[b]["input_ids"])))
        return replies

    def decode_batch(self, batch: dict, settings: DecodeSettings, gens, **kw):
        """The model's work for a ready batch: the emotion decision (``generate.emotion``) and the
        decoding. Returns (Decoded, label index per row or None). With single-token label words the
        decision reads the prefill's next-token scores (no extra forward); otherwise each label
        word is scored after the prompt (:meth:`ELMDModel.label_logprobs`) first."""
        picks: list[int] = []
        prefix_fn = forced = None
        if settings.emotion == "constrained":
            label_ids, newline = self._label_ids(), self.tokenizer.encode("\n")
            if all(len(w) == 1 for w in label_ids):
                prefix_fn = _first_token_decision(label_ids, newline, settings, gens, picks, self.device)
            else:
                picks = self._decide_emotions(batch, settings, gens)
                forced = [label_ids[p] + newline for p in picks]
        out = decode(self.model, batch, settings, gens, forced=forced, banned=self._banned(), prefix_fn=prefix_fn,
                     forced_run=self.forced_run or None, **kw)
        return out, (picks if settings.emotion == "constrained" else None)

    def _banned(self) -> torch.Tensor:
        """Bool mask [tokenizer vocab] of the ids a reply never contains (byte pieces, controls,
        specials); LM-head rows past the tokenizer are masked by the decoder too."""
        if getattr(self, "_banned_mask", None) is None:
            mask = torch.zeros(max([self.tokenizer.vocab_size, *(i + 1 for i in self.keep_ids)]), dtype=torch.bool)
            mask[self.tokenizer.never_generated_ids(keep=self.keep_ids)] = True
            self._banned_mask = mask.to(self.device)
        return self._banned_mask

    def _label_ids(self) -> list[list[int]]:
        from elmd.models.prompt import label_word_ids

        return label_word_ids(self.tokenizer, self.labels)

    def _decide_emotions(self, batch: dict, settings: DecodeSettings, gens) -> list[int]:
        """Label index per row: the label words scored after the prompt (mean log-prob per token)."""
        from elmd.inference.decoding import pick_labels

        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "video_feats", "video_present", "video_mask")
                  if k in batch}
        return pick_labels(self.model.label_logprobs(**inputs, label_ids=self._label_ids()), settings, gens)

    def _media(self) -> Path:
        if self.media_dir is None:
            import tempfile

            self.media_dir = Path(tempfile.mkdtemp(prefix="elmd-media-"))
        return self.media_dir

    def with_overrides(self, overrides: Sequence[str]) -> "Pipeline":
        """A pipeline sharing this one's model with ``key=value`` overrides on its config (prompt,
        retrieval, decoding and video switches; the model itself is not rebuilt)."""
        from elmd.config import with_overrides
        from elmd.resources import FeatureStore, open_index, video_tokens

        if not overrides:
            return self
        cfg = with_overrides(self.cfg, list(overrides))
        index = self.index if self.index is not None or not cfg.prompt.use_demonstration else open_index(cfg)
        store = self.store if self.store is not None or not video_tokens(cfg) or self.model is None else \
            FeatureStore(cfg.vision, None, in_memory=False)
        return replace(self, cfg=cfg, index=index, store=store if video_tokens(cfg) else None)

    def meta_config(self):
        """The folder's config as trained (no overrides)."""
        from elmd.runs import run_config

        return run_config(self.folder)

    def with_heads(self, names: Sequence[str]) -> "Pipeline":
        """A pipeline sharing this one's model with the heads ``names`` built (``reply.extras``)."""
        from elmd.inference.heads import build_head

        other = replace(self, heads=[])
        other.heads = [build_head(n, other, self.cfg) for n in names]
        return other


def _parse_meta_block(text: str, labels, emotion):
    """(extras["meta"], emotion, response) of a meta-trained run's output (the prompt gave ``情绪：``):
    :func:`elmd.data.meta_response.meta_extras`; the response is the 回复 field ('' when the parse failed)."""
    from elmd.data.meta_response import OPEN, meta_extras

    meta = meta_extras(OPEN + text, {i: labels.word(i) for i in labels.ids})
    if not meta["ok"]:
        return meta, emotion, ""
    return meta, meta["emotion"], meta.pop("reply")


def _first_token_decision(label_ids, newline, settings, gens, picks: list, device):
    """``prefix_fn`` for :func:`~elmd.inference.decoding.decode` when every label word is one token:
    its mean log-prob is the log-prob of that token at the last prompt position, which the prefill
    has computed already. Fills ``picks`` and returns the forced prefixes (word + newline)."""
    from elmd.inference.decoding import pick_labels

    first = torch.tensor([w[0] for w in label_ids], device=device)

    def prefix_fn(logits):
        picks[:] = pick_labels(logits.float().log_softmax(-1)[:, first], settings, gens)
        return [label_ids[p] + newline for p in picks]

    return prefix_fn


def _check_index_unchanged(meta: dict, index_path: str) -> None:
    """Warn (once, on stderr) when the index is not the one the run was trained with."""
    import hashlib
    import sys

    want = (meta.get("fingerprints") or {}).get("index", {}).get("meta_sha256")
    file = Path(index_path) / "meta.json"
    if want and file.is_file() and hashlib.sha256(file.read_bytes()).hexdigest() != want:
        print(f"warning: the index at {index_path} changed since the run was trained (its meta.json differs from the "
              "one recorded in the run's meta.json) — demonstrations now come from another index; rebuild the run's "
              "index or point index.path at it", file=sys.stderr)


def _token_hook(on_token: Callable[[int, int], None], idx: list[int]):
    """decode's ``on_tokens(step, tokens, finished)`` -> ``on_token(request index, token)`` until each row's eos."""
    done = [False] * len(idx)

    def hook(step, tokens, finished):
        for b, t in enumerate(tokens.tolist()):
            if not done[b]:
                on_token(idx[b], t)
                done[b] = bool(finished[b])

    return hook


def load(run_dir: str | Path, device: str = "auto", overrides=(), heads: Sequence[str] = (), encoder=None,
         with_model: bool = True, media_dir: str | Path | None = None) -> Pipeline:
    """Load a finished stage output folder (``rep`` or ``eerg`` ...) from any working directory.

    ``overrides``: ``key=value`` on top of the folder's config (e.g. ``generate.greedy=true``);
    ``device``: auto (the config's ``generate.device``), cpu or cuda; ``heads``: downstream heads by
    name; ``encoder``: a loaded visual encoder for videos missing from the feature cache;
    ``with_model=False`` loads everything but the LLM (the retrieval-only baseline).
    """
    from elmd.inference.loading import load_model, resolve_device
    from elmd.resources import FeatureStore, labels_of, open_index, video_tokens
    from elmd.runs import read_meta, run_config
    from elmd.stages import get_stage

    folder = Path(run_dir)
    meta = read_meta(folder)
    cfg = run_config(folder, overrides)
    spec = get_stage(meta.get("stage", cfg.train.stage))
    dev = resolve_device(cfg.generate.device if device == "auto" else device)
    model, tokenizer = None, None
    if with_model:
        model, tokenizer, _ = load_model(folder, dev, cfg)
    index = open_index(cfg) if cfg.prompt.use_demonstration else None
    if index is not None:
        _check_index_unchanged(meta, cfg.index.path)
    store = FeatureStore(cfg.vision, encoder, in_memory=False) if with_model and video_tokens(cfg) else None
    pipe = Pipeline(cfg, folder, meta, spec, model, tokenizer, labels_of(cfg), index, store,
                    media_dir=Path(media_dir) if media_dir else None)
    if model is not None and model.added_tokens is not None:  # a head's tokens (stage sticker's [IMG1..r])
        pipe.keep_ids = pipe.forced_run = tuple(model.added_tokens.ids)
    return pipe.with_heads(heads) if heads else pipe
