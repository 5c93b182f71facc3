"""The batching engine of `elmd serve`, apart from HTTP (anchor: vLLM's ``AsyncLLMEngine``; issue 16).

One model, one worker thread. The event loop only appends a :class:`Job` to a bounded queue and
awaits its future, so it never blocks on the model. The worker takes the first waiting job, waits
at most ``max_wait_ms`` for up to ``max_batch - 1`` more, and answers them with ONE call of
``answer(requests, on_token)`` (``Pipeline.respond_batch``); results and streamed token ids are
handed back to the loop with ``call_soon_threadsafe``.

- a full queue (``max_queue`` waiting) raises :class:`QueueFull` (the server answers 503 + Retry-After);
- :meth:`Engine.cancel` (a client that went away) removes a waiting job at once, freeing its slot;
  a job already in a batch is finished by the model but its tokens and result are dropped;
- a job whose deadline passed before its batch started fails with :class:`RequestTimeout`;
- a batch that raises is retried one request at a time, so one bad request fails alone (a stream
  does not repeat the tokens it already sent: decoding is seeded per request);
- :meth:`Engine.call` runs a function on the worker between batches (video decoding, sweeps), so
  the model and the feature store are only ever used from one thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Sequence

from elmd.errors import ElmdError


class QueueFull(ElmdError):
    """The engine's queue holds ``max_queue`` waiting requests."""


class RequestTimeout(ElmdError):
    """A request was not answered within its timeout."""


class EngineStopped(ElmdError):
    """The engine is not running."""


@dataclass(eq=False)
class Job:
    """One request in the engine (or a function to run on the worker when ``fn`` is set)."""

    request: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    deadline: float
    tokens: asyncio.Queue | None = None
    """Streaming: generated token ids, then ``None`` when the job is done."""
    fn: Callable[[], Any] | None = None
    cancelled: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    sent: int = 0
    """Tokens handed to the stream so far."""
    skip: int = 0
    """Tokens not to hand on again (a retried batch regenerates the same seeded tokens)."""

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the job's loop; thread-safe, ignored once cancelled."""
        def done():
            if not self.future.done():
                self.future.set_exception(error) if error is not None else self.future.set_result(result)
            if self.tokens is not None:
                self.tokens.put_nowait(None)
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(done)

    def token(self, token_id: int) -> None:
        if self.skip:
            self.skip -= 1
            return
        if self.tokens is not None and not self.cancelled and not self.loop.is_closed():
            self.sent += 1
            self.loop.call_soon_threadsafe(self.tokens.put_nowait, token_id)


@dataclass
class EngineStats:
    """Counters of a running engine (read by tests, the benchmark and ``/healthz``)."""

    batches: int = 0
    """Calls of ``answer`` (one per batch; a retried batch adds one per request)."""
    answered: int = 0
    rejected: int = 0
    """Requests refused with :class:`QueueFull`."""
    cancelled: int = 0
    timed_out: int = 0
    failed: int = 0
    largest_batch: int = 0


class Engine:
    """Bounded queue + batching worker around ``answer(requests, on_token) -> replies``."""

    def __init__(self, answer: Callable[..., list], max_batch: int = 8, max_wait_ms: float = 20.0,
                 max_queue: int = 64, timeout_s: float = 120.0, check: Callable[[Any], None] | None = None):
        self.answer, self.max_batch, self.max_wait = answer, max_batch, max_wait_ms / 1000.0
        self.max_queue, self.timeout_s, self.check = max_queue, timeout_s, check
        self.stats = EngineStats()
        self._waiting: deque[Job] = deque()
        self._calls: deque[Job] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "Engine":
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="elmd-serve-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._stop = True
            left = list(self._waiting) + list(self._calls)
            self._waiting.clear(), self._calls.clear()
            self._cv.notify_all()
        for job in left:
            job.resolve(error=EngineStopped("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # -- submitting ----------------------------------------------------------------------------------
    def submit(self, request, stream: bool = False) -> Job:
        """Queue ``request`` (call from the event loop); raises :class:`QueueFull`."""
        loop = asyncio.get_running_loop()
        job = Job(request, loop, loop.create_future(), time.monotonic() + self.timeout_s,
                  asyncio.Queue() if stream else None)
        with self._cv:
            if self._stop or self._thread is None:
                raise EngineStopped("the engine is not running")
            if len(self._waiting) >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(f"{len(self._waiting)} requests are waiting (max_queue={self.max_queue})")
            self._waiting.append(job)
            self._cv.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """Forget ``job`` (its client went away): a waiting job leaves the queue now."""
        if job.cancelled:
            return
        job.cancelled = True
        self.stats.cancelled += 1
        with self._cv:
            try:
                self._waiting.remove(job)
            except ValueError:
                pass  # already in a batch (or done)
        if not job.future.done():
            job.future.cancel()

    async def result(self, job: Job):
        """The reply of ``job``; raises :class:`RequestTimeout` after its deadline (and cancels it)."""
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), max(0.0, job.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self.stats.timed_out += 1
            self.cancel(job)
            raise RequestTimeout(f"no answer within {self.timeout_s:g} s") from None

    async def complete(self, request):
        """Submit ``request`` and await its reply."""
        job = self.submit(request)
        try:
            return await self.result(job)
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    async def stream(self, job: Job) -> AsyncIterator[int]:
        """Token ids of a streaming ``job`` as they are generated; then ``await engine.result(job)``."""
        while True:
            left = job.deadline - time.monotonic()
            try:
                token = await asyncio.wait_for(job.tokens.get(), max(0.0, left))
            except asyncio.TimeoutError:
                self.stats.timed_out += 1
                self.cancel(job)
                raise RequestTimeout(f"no answer within {self.timeout_s:g} s") from None
            if token is None:
                return
            yield token

    async def call(self, fn: Callable[[], Any], timeout_s: float | None = None):
        """Run ``fn()`` on the worker thread (between batches) and await its result."""
        loop = asyncio.get_running_loop()
        job = Job(None, loop, loop.create_future(), time.monotonic() + (timeout_s or self.timeout_s), fn=fn)
        with self._cv:
            if self._stop or self._thread is None:
                raise EngineStopped("the engine is not running")
            self._calls.append(job)
            self._cv.notify_all()
        return await self.result(job)

    # -- the worker ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            calls, batch = self._next()
            if calls is None:
                return
            for job in calls:
                try:
                    job.resolve(job.fn())
                except Exception as e:  # noqa: BLE001  (handed to the caller)
                    job.resolve(error=e)
            if batch:
                self._answer(batch)

    def _next(self) -> tuple[list[Job] | None, list[Job]]:
        """Wait for work: pending calls, and a batch (up to max_batch, filled for at most max_wait)."""
        with self._cv:
            while not self._stop and not self._waiting and not self._calls:
                self._cv.wait(0.5)
            if self._stop:
                return None, []
            calls = list(self._calls)
            self._calls.clear()
            if self._waiting and not calls:
                fill_until = self._waiting[0].queued_at + self.max_wait
                while not self._stop and len(self._waiting) < self.max_batch and not self._calls:
                    left = fill_until - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
            batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))] if not calls \
                else []
        now, ready = time.monotonic(), []
        for job in batch:
            if job.cancelled:
                continue
            if now > job.deadline:
                self.stats.timed_out += 1
                job.resolve(error=RequestTimeout(f"waited longer than {self.timeout_s:g} s"))
                continue
            try:
                if self.check is not None:
                    self.check(job.request)
                ready.append(job)
            except Exception as e:  # noqa: BLE001  (this request alone fails)
                self.stats.failed += 1
                job.resolve(error=e)
        return calls, ready

    def _answer(self, batch: Sequence[Job]) -> None:
        try:
            replies = self._call_answer(batch)
        except Exception as e:  # noqa: BLE001
            if len(batch) == 1:
                self.stats.failed += 1
                batch[0].resolve(error=e)
                return
            for job in batch:  # one bad request must not fail the others
                job.skip, job.sent = job.sent, 0  # its stream already has those (same seed, same tokens)
                self._answer([job])
            return
        self.stats.answered += len(batch)
        for job, reply in zip(batch, replies):
            job.resolve(reply)

    def _call_answer(self, batch: Sequence[Job]) -> list:
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        streaming = any(j.tokens is not None for j in batch)
        on_token = (lambda i, t: batch[i].token(t)) if streaming else None
        def gone(i: int) -> bool:  # its client left or its time is up: the decoder ends that row now
            return batch[i].cancelled or time.monotonic() > batch[i].deadline

        replies = self.answer([j.request for j in batch], on_token, should_stop=gone)
        if len(replies) != len(batch):
            raise RuntimeError(f"answer() returned {len(replies)} replies for {len(batch)} requests")
        return replies
