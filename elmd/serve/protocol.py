"""Request and response models of `elmd serve`, mirroring OpenAI's chat completions API (anchor:
vLLM's ``entrypoints/openai/protocol.py``), plus the ``elmd`` object every answer carries.

A chat request is OpenAI's: ``messages`` (system / user / assistant), ``temperature``, ``top_p``,
``max_tokens``, ``seed``, ``stream``. Unknown OpenAI fields are accepted and ignored. ELMD's own
inputs go in an optional ``elmd`` object (``video_id`` of an upload for the last user turn,
``dialogue_id``) or as a content part ``{"type": "video", "video_id": "vid_..."}`` of a user message.
The answer's ``elmd`` object holds the predicted emotion, the retrieved demonstration and the
heads' media URLs (paths under ``/media/`` on this server).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    """One part of a message's content: ``{"type": "text", "text"}`` or ``{"type": "video", "video_id"}``."""

    type: str
    text: str | None = None
    video_id: str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class ElmdOptions(_Lenient):
    """ELMD inputs of a request (send with the OpenAI client as ``extra_body={"elmd": {...}}``)."""

    video_id: str | None = None
    """An upload's id (``POST /v1/elmd/videos``): the video of the last user turn."""
    dialogue_id: str = Field("", max_length=200)
    """Dialogue the turn belongs to: demonstrations from it are not retrieved."""
    greedy: bool | None = None


class ChatCompletionRequest(_Lenient):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    """0 = greedy decoding."""
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0, lt=2 ** 31)
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    elmd: ElmdOptions | None = None


class ElmdInfo(BaseModel):
    """What ELMD adds to an answer."""

    emotion: str | None = None
    """Label id of the reply's emotion (None when the model's first line named no emotion)."""
    emotion_word: str = ""
    demonstration: str = ""
    """The retrieved demonstration (prompt part R) the reply was conditioned on."""
    sticker_url: str | None = None
    avatar_audio_url: str | None = None
    avatar_video_url: str | None = None
    new_tokens: int = 0
    heads: dict = Field(default_factory=dict)
    """Each head's other fields (scores, profile, an ``error`` when the head could not run)."""


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    elmd: ElmdInfo


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    elmd: ElmdInfo | None = None
    """Only on the last chunk (the one with ``finish_reason``)."""


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "elmd"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class VideoObject(BaseModel):
    """Answer of ``POST /v1/elmd/videos``: pass ``id`` as ``elmd.video_id`` or a video content part."""

    id: str
    object: Literal["elmd.video"] = "elmd.video"
    bytes: int
    format: str
    expires_at: int


class ErrorInfo(BaseModel):
    message: str
    type: str
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


def sse(chunk: BaseModel | str) -> str:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    body = chunk if isinstance(chunk, str) else chunk.model_dump_json(exclude_none=False)
    return f"data: {body}\n\n"
