"""The FastAPI app of `elmd serve`: thin routes over a :class:`~elmd.serve.backend.Backend` (issue 16;
anchor: vLLM's ``entrypoints/openai/api_server.py`` and ChatGLM2-6B's ``openai_api.py``).

    GET  /healthz               liveness + queue counters (no key needed)
    GET  /v1/models             the one served model
    POST /v1/chat/completions   OpenAI chat completions; ``stream=true`` -> SSE chunks, then ``data: [DONE]``
    POST /v1/elmd/videos        multipart upload (field ``file``) -> ``{"id": "vid_..."}``
    GET  /media/<name>          a generated sticker / avatar file (unguessable name, expires)
    /                           the web chat page (gradio, :mod:`elmd.serve.page`)

With ``api_key`` set, every ``/v1`` route needs ``Authorization: Bearer <key>`` and the page asks
for the key as its password. Every error is ``{"error": {"message", "type"}}`` with no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from elmd.errors import ElmdError
from elmd.serve.backend import Answer, Backend
from elmd.serve.engine import EngineStopped, QueueFull, RequestTimeout
from elmd.serve.protocol import (AssistantMessage, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
                                 Choice, ChunkChoice, DeltaMessage, ModelCard, ModelList, Usage, VideoObject, sse)
from elmd.serve.videos import UploadError

log = logging.getLogger("elmd.serve")


def error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status, headers=headers)


def create_app(backend: Backend) -> FastAPI:
    """The app for ``backend`` (start it with ``backend.start()``; the page is mounted when
    ``backend.cfg.page``)."""
    cfg = backend.cfg
    app = FastAPI(title="elmd serve", docs_url=None, redoc_url=None, openapi_url=None)
    _handlers(app, cfg.retry_after_s)

    app.add_middleware(BodyLimit, path="/v1/chat/completions",
                       limit=cfg.max_messages * cfg.max_message_chars * 4 + (1 << 16))  # UTF-8 + JSON overhead

    async def auth(request: Request) -> None:
        if not cfg.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise UploadError("missing or wrong API key — send 'Authorization: Bearer <key>'", 401,
                              "authentication_error")

    @app.get("/healthz")
    async def healthz():
        s = backend.engine.stats
        return {"status": "ok", "model": backend.model_name, "waiting": backend.engine.waiting,
                "batches": s.batches, "answered": s.answered}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=backend.model_name)])

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat(body: ChatCompletionRequest, http: Request):
        request = backend.request_of(body)
        if body.stream:
            job = backend.engine.submit(request, stream=True)
            return StreamingResponse(_events(backend, job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        job = backend.engine.submit(request)
        task = asyncio.ensure_future(backend.engine.result(job))
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and await http.is_disconnected():
                backend.engine.cancel(job)  # the client went away: free its slot
                task.cancel()
                return Response(status_code=499)
        answer: Answer = task.result()
        usage = Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                      total_tokens=answer.prompt_tokens + answer.completion_tokens)
        return ChatCompletionResponse(id=answer.id, model=backend.model_name, elmd=answer.elmd, usage=usage, choices=[
            Choice(message=AssistantMessage(content=answer.content), finish_reason=answer.finish_reason)])

    @app.post("/v1/elmd/videos", dependencies=[Depends(auth)])
    async def upload(http: Request, file: UploadFile = File(...)) -> VideoObject:
        declared = int(http.headers.get("content-length") or 0)
        if declared > cfg.max_upload_bytes + (1 << 16):
            raise UploadError(f"the video is larger than {cfg.max_upload_mb:g} MiB", 413)
        video = await backend.videos.add_stream(file.read)
        return VideoObject(id=video.id, bytes=video.bytes, format=video.format,
                           expires_at=int(video.born + cfg.video_ttl_s))

    @app.get("/media/{name}")
    async def media(name: str):
        path = backend.media.path_of(name)
        if path is None:
            return error(404, "no such media file (or it expired)", "not_found_error")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=60"})

    if cfg.page:
        from elmd.serve.page import mount_page

        app = mount_page(app, backend)
    return app


class BodyLimit:
    """Pure ASGI middleware (keeps disconnects visible to the routes, unlike ``@app.middleware``):
    a request to ``path`` declaring a body over ``limit`` bytes is a 413 before it is read."""

    def __init__(self, app, path: str, limit: int):
        self.app, self.path, self.limit = app, path, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == self.path:
            declared = dict(scope.get("headers") or ()).get(b"content-length", b"0")
            if declared.isdigit() and int(declared) > self.limit:
                await error(413, f"the request body is larger than {self.limit} bytes")(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _events(backend: Backend, job):
    """The SSE stream of one job: a role chunk, content deltas, the final chunk with ``elmd``, [DONE]."""
    name, sent = backend.model_name, ""
    cid = job.request.sample_id

    def chunk(**kw) -> str:
        fin, info = kw.pop("finish_reason", None), kw.pop("elmd", None)
        return sse(ChatCompletionChunk(id=cid, model=name, elmd=info,
                                       choices=[ChunkChoice(delta=DeltaMessage(**kw), finish_reason=fin)]))
    try:
        yield chunk(role="assistant", content="")
        async for delta in backend.stream(job):
            sent += delta
            yield chunk(content=delta)
        answer: Answer = await backend.engine.result(job)
        rest = answer.content[len(sent):] if answer.content.startswith(sent) else ""
        yield chunk(content=rest, finish_reason=answer.finish_reason, elmd=answer.elmd)
        yield sse("[DONE]")
    except (ElmdError, asyncio.TimeoutError) as e:
        kind = "timeout_error" if isinstance(e, (RequestTimeout, asyncio.TimeoutError)) else "server_error"
        yield sse(f'{{"error": {{"message": {_json(str(e))}, "type": "{kind}"}}}}')
        yield sse("[DONE]")
    except Exception:  # noqa: BLE001  (logged here, never sent to the client)
        log.exception("stream %s failed", cid)
        yield sse('{"error": {"message": "internal error", "type": "server_error"}}')
        yield sse("[DONE]")
    finally:
        if not job.future.done():
            backend.engine.cancel(job)


def _json(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def _handlers(app: FastAPI, retry_after: int) -> None:
    @app.exception_handler(UploadError)
    async def _upload(_, e: UploadError):
        return error(e.status, str(e), e.kind)

    @app.exception_handler(QueueFull)
    async def _full(_, e: QueueFull):
        return error(503, f"the server is busy ({e}) — retry later", "server_busy",
                     headers={"Retry-After": str(retry_after)})

    @app.exception_handler(RequestTimeout)
    async def _timeout(_, e: RequestTimeout):
        return error(504, str(e), "timeout_error")

    @app.exception_handler(EngineStopped)
    async def _stopped(_, e: EngineStopped):
        return error(503, str(e), "server_busy", headers={"Retry-After": str(retry_after)})

    @app.exception_handler(ElmdError)
    async def _elmd(_, e: ElmdError):
        return error(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return error(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def _http(_, e: HTTPException):
        return error(e.status_code, str(e.detail), "not_found_error" if e.status_code == 404 else "invalid_request_error")

    @app.exception_handler(Exception)
    async def _any(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, "internal error", "server_error")
