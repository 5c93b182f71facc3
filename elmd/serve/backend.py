"""What the HTTP routes and the web page share: one :class:`Backend` per server (issue 16).

It owns the loaded :class:`~elmd.inference.Pipeline`, the batching :class:`~elmd.serve.engine.Engine`
around ``Pipeline.respond_batch``, the uploads (:mod:`elmd.serve.videos`) and the generated media
(:mod:`elmd.serve.media`), and turns OpenAI messages into an :class:`~elmd.inference.Request`:
system messages -> background B, earlier user / assistant messages -> history turns (the newest
``max_history_turns`` kept), the last user message -> utterance u (with its video). Streaming
text is the response part only: nothing is sent until the emotion line is complete
(:func:`elmd.models.prompt.parse_output` decides where it ends), and the final chunk carries the rest.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from elmd.data.schema import Turn
from elmd.inference.reply import Reply, Request
from elmd.serve.config import ServeConfig
from elmd.serve.engine import Engine
from elmd.serve.media import MediaStore
from elmd.serve.protocol import ChatCompletionRequest, ElmdInfo
from elmd.serve.videos import UploadError, VideoStore

USER, ASSISTANT = "用户", "助手"


@dataclass
class Answer:
    """A finished turn as the routes and the page show it."""

    id: str
    content: str
    finish_reason: str
    elmd: ElmdInfo
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend:
    """One model behind a queue, shared by the API routes and the page."""

    def __init__(self, pipe, cfg: ServeConfig):
        cfg.validate()
        self.pipe, self.cfg = pipe, cfg
        self.model_name = cfg.model_name or Path(getattr(pipe, "folder", "elmd")).name or "elmd"
        self._tmp = None if cfg.work_dir else tempfile.mkdtemp(prefix="elmd-serve-")
        work = Path(cfg.work_dir or self._tmp)
        self.heads_dir = work / "heads"
        self.heads_dir.mkdir(parents=True, exist_ok=True)
        if hasattr(pipe, "media_dir"):
            pipe.media_dir = self.heads_dir
        self.media = MediaStore(work / "media", cfg.media_ttl_s)
        self.videos = VideoStore(work / "uploads", cfg.max_upload_bytes, cfg.video_ttl_s, cfg.max_videos,
                                 self._decode_upload, self._forget_upload)
        self.engine = Engine(self._answer, cfg.max_batch, cfg.max_wait_ms, cfg.max_queue, cfg.request_timeout_s,
                             check=self._check)
        self._hidden = any(getattr(h, "name", "") == "sticker" for h in getattr(pipe, "heads", []))

    def start(self) -> "Backend":
        self.engine.start()
        return self

    def close(self) -> None:
        self.engine.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- on the worker thread ------------------------------------------------------------------------
    def _answer(self, requests: list[Request], on_token=None, should_stop=None) -> list[Answer]:
        kwargs = {"output_hidden": True} if self._hidden else {}
        replies = self.pipe.respond_batch(requests, on_token=on_token, should_stop=should_stop, **kwargs)
        out = []
        for r in replies:
            urls, heads = self.media.publish_extras(r.extras, self.heads_dir) if r.extras else ({}, {})
            out.append((r, urls, heads))
        self._clean_heads_dir()
        return [self._to_answer(req, r, urls, heads) for req, (r, urls, heads) in zip(requests, out)]

    def _to_answer(self, request: Request, r: Reply, urls: dict, heads: dict) -> Answer:
        eos = getattr(self.pipe.tokenizer, "eos_id", None)
        stop = bool(r.token_ids) and r.token_ids[-1] == eos
        info = ElmdInfo(emotion=r.emotion, emotion_word=r.emotion_word, demonstration=r.demonstration,
                        new_tokens=r.new_tokens, heads=heads, **urls)
        return Answer(request.sample_id, r.response, "stop" if stop else "length", info,
                      getattr(r, "prompt_tokens", 0), r.new_tokens)

    def _clean_heads_dir(self) -> None:
        for child in self.heads_dir.iterdir():  # what the heads left (reference images, work files)
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    def _check(self, request: Request) -> None:
        """Run on the worker before a batch: every video the request names still exists."""
        for path in [request.video] + [t.video for t in request.history]:
            if path and not Path(path).is_file():
                raise UploadError("a video of this request expired — upload it again", 410)

    async def _decode_upload(self, path: Path) -> None:
        await self.engine.call(lambda: self.decode_video(path))

    def decode_video(self, path: Path) -> None:
        """Decode ``path`` once: its features go into the feature store's memory (or, for a run
        without video, the frames are read to check the file)."""
        from elmd.models.video import load_frames

        store = getattr(self.pipe, "store", None)
        vision = self.pipe.cfg.vision
        if store is None or vision.on_bad_video != "error":
            load_frames(path, vision.num_frames, vision.image_size, vision.backend)
        if store is not None:
            store.memo[str(path)] = store([str(path)])[0]

    def _forget_upload(self, path: Path) -> None:
        store = getattr(self.pipe, "store", None)
        if store is not None:
            store.memo.pop(str(path), None)

    # -- requests ------------------------------------------------------------------------------------
    def request_of(self, body: ChatCompletionRequest) -> Request:
        """The pipeline request of an OpenAI chat body (raises :class:`UploadError` 400 on bad input)."""
        cfg = self.cfg
        if len(body.messages) > cfg.max_messages:
            raise UploadError(f"{len(body.messages)} messages — at most {cfg.max_messages} per request")
        background, turns = [], []
        for m in body.messages:
            text, video = self._content(m.content)
            if m.role in ("system", "developer"):
                background.append(text)
            else:
                turns.append(Turn(USER if m.role == "user" else ASSISTANT, text, None, video))
        if not turns or turns[-1].speaker != USER or not turns[-1].text.strip():
            raise UploadError("the last message must be a user message with text")
        last = turns[-1]
        opts = body.elmd
        video = last.video
        if opts is not None and opts.video_id:
            video = str(self.videos.path_of(opts.video_id))
        max_tokens = body.max_completion_tokens or body.max_tokens
        if max_tokens is not None and max_tokens > cfg.max_tokens_limit:
            raise UploadError(f"max_tokens={max_tokens} — at most {cfg.max_tokens_limit}")
        greedy = opts.greedy if opts is not None and opts.greedy is not None else \
            (True if body.temperature == 0 else None)
        return Request(last.text, history=tuple(turns[:-1][-cfg.max_history_turns:]), video=video,
                       background="\n".join(background).strip(), seed=body.seed,
                       sample_id="chatcmpl-" + secrets.token_hex(12), dialogue_id=opts.dialogue_id if opts else "",
                       speaker=USER, responder=ASSISTANT, max_new_tokens=max_tokens, greedy=greedy,
                       temperature=body.temperature or None, top_p=body.top_p)

    def _content(self, content) -> tuple[str, str | None]:
        if content is None:
            return "", None
        parts = [content] if isinstance(content, str) else content
        texts, video = [], None
        for p in parts:
            if isinstance(p, str):
                texts.append(p)
            elif p.type == "text":
                texts.append(p.text or "")
            elif p.type == "video" and p.video_id:
                video = str(self.videos.path_of(p.video_id))
            else:
                raise UploadError(f"content part type '{p.type[:40]}' — use 'text' or 'video' (with video_id)")
        text = "".join(texts)
        if len(text) > self.cfg.max_message_chars:
            raise UploadError(f"a message has {len(text)} characters — at most {self.cfg.max_message_chars}")
        return text, video

    async def answer(self, request: Request) -> Answer:
        return await self.engine.complete(request)

    async def stream(self, job) -> AsyncIterator[str]:
        """Text deltas of a streaming job's response (the emotion line held back)."""
        from elmd.models.prompt import parse_output

        eos = getattr(self.pipe.tokenizer, "eos_id", None)
        ids, sent = [], ""
        async for token in self.engine.stream(job):
            if token == eos:
                continue
            ids.append(token)
            text = self.pipe.tokenizer.decode(ids)
            if "\n" not in text.strip():
                continue  # the emotion line is not finished
            _, response = parse_output(text, self.pipe.labels)
            if response.startswith(sent) and len(response) > len(sent):
                delta, sent = response[len(sent):], response
                yield delta
