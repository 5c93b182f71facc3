"""Typed results of answering a turn: :class:`Request` in, :class:`Reply` out (one type everywhere).

``Pipeline.respond`` / ``respond_batch`` (:mod:`elmd.inference.pipeline`), `elmd generate`, `elmd chat`,
the baselines, the server and the heads all speak these two types. A prediction row (the JSONL that
`elmd generate` writes and `elmd evaluate` reads) is derived from a reply by :func:`prediction_row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from elmd.data.schema import Turn


@dataclass
class Request:
    """One turn to answer."""

    utterance: str
    """The current utterance u (the user's text)."""
    history: tuple[Turn, ...] | list[Turn] = ()
    """Earlier turns, oldest first (speaker, text, emotion, video)."""
    video: str | None = None
    """Path of the utterance's video, or None (no video tokens)."""
    background: str = ""
    """Background B of the dialogue (scene description)."""
    seed: int | None = None
    """Sampling seed of this request (None = the config's generate.seed)."""
    sample_id: str = ""
    """Identifier (a data sample's id; '' for a chat turn)."""
    dialogue_id: str = ""
    """The dialogue it belongs to: demonstrations from this dialogue are excluded ('' = none)."""
    speaker: str = "用户"
    """Speaker name of the utterance in the prompt."""
    responder: str = "助手"
    """Speaker name of the reply."""
    max_new_tokens: int | None = None
    """Decoding overrides of this request (None = the config's ``generate.*``)."""
    greedy: bool | None = None
    temperature: float | None = None
    top_p: float | None = None


@dataclass
class Reply:
    """One answered turn."""

    emotion: str | None
    """Label id of the reply's emotion (e.g. 'happy'), None when none could be decided / parsed."""
    emotion_word: str
    """The label's word in the prompt's language (e.g. 高兴); '' when ``emotion`` is None."""
    response: str
    """The reply text r (without the emotion word)."""
    demonstration: str = ""
    """Part R of the prompt: the retrieved demonstration as shown to the model ('' = none)."""
    raw_text: str = ""
    """Everything the model generated, decoded (emotion word, newline, response)."""
    new_tokens: int = 0
    """Generated tokens, eos included."""
    token_ids: list[int] = field(default_factory=list)
    """The generated token ids (eos included): what ``hidden`` and a head's [IMG] positions refer to."""
    hidden: torch.Tensor | None = None
    """Last-layer hidden states of the generated tokens [N, D] (only when asked for)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """What heads add: ``extras["sticker"]``, ``extras["avatar"]``, ... (JSON-serialisable values);
    a run trained with ``train.target=meta`` sets ``extras["meta"]`` (its parsed meta-response, or
    ``{"ok": false, "error"}``: :func:`elmd.data.meta_response.meta_extras`)."""
    prompt_tokens: int = 0
    """Tokens of the prompt the reply was generated from (video positions included)."""
