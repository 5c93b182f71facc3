"""A stand-in pipeline for the serve tests (diffusers' dummy-components habit): the same
``respond_batch(requests, on_token=...)`` contract as :class:`elmd.inference.Pipeline`, answering
``<emotion word>\\n<echo>`` character by character, optionally slowly, recording each call's size."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from elmd.config import load_config
from elmd.inference.reply import Reply
from elmd.resources import labels_of


class CharTokenizer:
    eos_id = 0

    def decode(self, ids):
        return "".join(chr(i) for i in ids if i)


class StandInPipe:
    """Answers ``高兴\\n收到：<utterance>`` (``悲伤`` when the seed is odd) after ``delay`` seconds per call."""

    def __init__(self, delay: float = 0.0):
        cfg = load_config("tiny")
        self.cfg, self.labels, self.tokenizer = cfg, labels_of(cfg), CharTokenizer()
        self.delay, self.calls, self.seen, self.store, self.heads = delay, [], [], None, []
        self.folder, self.media_dir = Path("standin"), None
        self.gate = threading.Event()
        self.gate.set()

    def text_of(self, r) -> str:
        return f"{'悲伤' if (r.seed or 0) % 2 else '高兴'}\n收到：{r.utterance}"

    def respond_batch(self, requests, on_token=None, **_):
        self.calls.append(len(requests))
        self.seen.extend(requests)
        self.gate.wait(30)
        time.sleep(self.delay)
        out = []
        for i, r in enumerate(requests):
            if r.utterance == "boom":
                raise RuntimeError("stand-in failure")
            text = self.text_of(r)
            ids = [ord(c) for c in text] + [0]
            for t in ids:
                if on_token is not None:
                    on_token(i, t)
            word = text.split("\n")[0]
            emotion = self.labels.from_word(word)
            out.append(Reply(emotion, word, text.split("\n", 1)[1], "参考回复（情绪：高兴）：示例", text, len(ids), ids))
        return out


def standin_cfg(**kw):
    from elmd.serve import ServeConfig

    return ServeConfig(**{"page": False, "max_wait_ms": 5.0, **kw})


class LiveServer:
    """uvicorn serving ``app`` on a random 127.0.0.1 port in a thread; ``stop()`` ends it."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
