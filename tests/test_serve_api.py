"""`elmd serve`'s API over a stand-in pipeline (FastAPI's TestClient and a live uvicorn): OpenAI's
format (plain and SSE), messages -> request (background, history, trimming), JSON errors, the API
key, the bind rule, a full queue's 503 + Retry-After, cancelled waiting jobs freeing their slot, a
failing request failing alone, and the media folder's names and expiry."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")

import httpx  # noqa: E402
from click.testing import CliRunner
from fastapi.testclient import TestClient
from serve_standin import LiveServer, StandInPipe, standin_cfg

from elmd.errors import ConfigError
from elmd.serve import ServeConfig, build, is_loopback
from elmd.serve.engine import Engine, QueueFull
from elmd.serve.media import MediaStore


@pytest.fixture
def served():
    def make(pipe=None, **cfg):
        pipe = pipe or StandInPipe()
        backend, app = build(None, standin_cfg(**cfg), pipe=pipe)
        made.append(backend)
        return pipe, backend, TestClient(app, raise_server_exceptions=False)
    made = []
    yield make
    for b in made:
        b.close()


def chat(client, *messages, **body):
    msgs = [{"role": r, "content": c} for r, c in messages]
    return client.post("/v1/chat/completions", json={"messages": msgs, **body})


def test_plain_answer_in_openai_format_with_the_elmd_object(served):
    pipe, _, client = served()
    r = chat(client, ("system", "两个朋友在聊天。"), ("user", "早"), ("assistant", "早呀"), ("user", "你好"), seed=4)
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion" and body["model"] == "standin"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "收到：你好"}
    assert body["choices"][0]["finish_reason"] == "stop"
    u = body["usage"]
    assert u["completion_tokens"] == body["elmd"]["new_tokens"] and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert body["elmd"]["emotion"] == "happy" and body["elmd"]["emotion_word"] == "高兴"
    assert body["elmd"]["demonstration"].startswith("参考回复")
    req = pipe.seen[-1]
    assert (req.utterance, req.background, req.seed) == ("你好", "两个朋友在聊天。", 4)
    assert [(t.speaker, t.text) for t in req.history] == [("用户", "早"), ("助手", "早呀")]
    assert chat(client, ("user", "你好"), seed=5).json()["elmd"]["emotion"] == "sad"  # the seed reaches the pipeline


def test_stream_is_the_plain_content_in_deltas_then_done(served):
    _, _, client = served()
    plain = chat(client, ("user", "今天下雨了"), seed=2).json()
    r = chat(client, ("user", "今天下雨了"), seed=2, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks) and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)
    assert text == plain["choices"][0]["message"]["content"] == "收到：今天下雨了"  # no emotion line streamed
    assert len(chunks) > 3  # token by token, not one blob
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["elmd"]["emotion_word"] == "高兴"
    assert all(c["elmd"] is None for c in chunks[:-1])


def test_history_is_trimmed_and_oversized_input_refused(served):
    pipe, _, client = served(max_history_turns=4, max_messages=200, max_message_chars=50)
    turns = [("user" if i % 2 == 0 else "assistant", f"第{i}句") for i in range(101)]
    assert chat(client, *turns).status_code == 200
    assert [t.text for t in pipe.seen[-1].history] == ["第96句", "第97句", "第98句", "第99句"]
    too_many = chat(client, *([("user", "a")] * 201))
    assert too_many.status_code == 400 and "at most 200" in too_many.json()["error"]["message"]
    assert chat(client, ("user", "长" * 51)).status_code == 400
    assert chat(client, ("user", "好"), max_tokens=10_000).status_code == 400
    huge = client.post("/v1/chat/completions", content=b"{" + b" " * (200 * 50 * 4 + 70_000) + b"}",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]["message"]
    assert len(pipe.seen) == 1  # refused before reaching the model


@pytest.mark.parametrize("body, where", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "video_id": "vid_../../etc/passwd"}]}]}, "video id"),
])
def test_bad_requests_are_json_errors_without_tracebacks(served, body, where):
    _, _, client = served()
    r = client.post("/v1/chat/completions", json=body)
    err = r.json()["error"]
    assert r.status_code == 400 and where in err["message"] and err["type"] == "invalid_request_error"
    assert "Traceback" not in r.text and "File \"" not in r.text


def test_a_failing_request_fails_alone_as_json_500_and_the_server_keeps_serving(served):
    pipe, _, client = served(max_wait_ms=300)
    with ThreadPoolExecutor(2) as ex:
        bad, good = ex.map(lambda u: chat(client, ("user", u)), ["boom", "好的"])
    assert bad.status_code == 500 and bad.json() == {"error": {"message": "internal error", "type": "server_error"}}
    assert good.status_code == 200 and good.json()["choices"][0]["message"]["content"] == "收到：好的"
    assert chat(client, ("user", "还在吗")).status_code == 200


def test_a_stream_in_a_failed_batch_is_not_repeated_when_retried(served):
    pipe, _, client = served(max_wait_ms=400)

    def stream():
        r = chat(client, ("user", "好的"), stream=True)
        return "".join(json.loads(e[6:])["choices"][0]["delta"]["content"] or "" for e in r.text.split("\n\n")
                       if e.startswith("data: {"))
    with ThreadPoolExecutor(2) as ex:
        streamed = ex.submit(stream)
        time.sleep(0.1)  # the stream is first in the batch: its tokens go out before the failure
        bad = ex.submit(chat, client, ("user", "boom"))
        assert streamed.result() == "收到：好的" and bad.result().status_code == 500
    assert pipe.calls[:3] == [2, 1, 1]  # the batch failed, then each request alone


def test_api_key_required_on_api_routes(served):
    _, _, client = served(api_key="s3cret")
    assert client.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        r = client.get("/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert chat(client, ("user", "你好")).status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "standin"


def test_non_loopback_bind_needs_an_api_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    with pytest.raises(ConfigError, match="--api-key"):
        ServeConfig(host="0.0.0.0").validate()
    ServeConfig(host="0.0.0.0", api_key="k").validate()
    from elmd.cli.main import main

    out = CliRunner().invoke(main, ["serve", "--checkpoint", "nowhere", "--host", "0.0.0.0"])
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "--api-key" in out.output
    assert "Traceback" not in out.output


def test_bad_config_values_are_one_line():
    with pytest.raises(ConfigError, match=r"serve.max_batch=0 is out of range"):
        ServeConfig(max_batch=0).validate()
    with pytest.raises(ConfigError, match=r"serve.heads='mouth'"):
        ServeConfig(heads=("mouth",)).validate()


def test_full_queue_is_503_with_retry_after_and_the_server_recovers():
    pipe = StandInPipe()
    pipe.gate.clear()  # the worker blocks inside its first call
    backend, app = build(None, standin_cfg(max_queue=2, max_batch=1, max_wait_ms=0, retry_after_s=3), pipe=pipe)
    server = LiveServer(app)
    try:
        def post(u):
            return httpx.post(f"{server.url}/v1/chat/completions", timeout=30,
                              json={"messages": [{"role": "user", "content": u}]})
        with ThreadPoolExecutor(3) as ex:
            running = ex.submit(post, "一")
            _wait(lambda: pipe.calls == [1])
            queued = [ex.submit(post, u) for u in ("二", "三")]
            _wait(lambda: backend.engine.waiting == 2)
            full = post("四")
            assert full.status_code == 503 and full.headers["retry-after"] == "3"
            assert full.json()["error"]["type"] == "server_busy"
            pipe.gate.set()
            assert [f.result().status_code for f in [running, *queued]] == [200, 200, 200]
        assert post("五").json()["choices"][0]["message"]["content"] == "收到：五"
        assert backend.engine.stats.rejected == 1
    finally:
        server.stop()
        backend.close()


def _wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_cancelled_waiting_job_frees_its_slot_and_is_never_run():
    pipe = StandInPipe()
    pipe.gate.clear()
    engine = Engine(pipe.respond_batch, max_batch=1, max_wait_ms=0, max_queue=1).start()
    from elmd.inference import Request

    async def scenario():
        first = engine.submit(Request("一"))
        while pipe.calls != [1]:
            await asyncio.sleep(0.01)
        waiting = engine.submit(Request("二"))
        with pytest.raises(QueueFull):
            engine.submit(Request("三"))
        engine.cancel(waiting)  # its client went away
        third = engine.submit(Request("三"))
        pipe.gate.set()
        return (await engine.result(first)).response, (await engine.result(third)).response

    try:
        assert asyncio.run(scenario()) == ("收到：一", "收到：三")
        assert [r.utterance for r in pipe.seen] == ["一", "三"]
    finally:
        engine.stop()


def test_a_request_past_its_timeout_is_504(served):
    pipe = StandInPipe(delay=0.6)
    _, _, client = served(pipe, request_timeout_s=0.2)
    r = chat(client, ("user", "慢"))
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"


def test_media_names_are_unguessable_checked_and_expire(tmp_path):
    heads = tmp_path / "heads"
    (heads / "avatar" / "t").mkdir(parents=True)
    (heads / "avatar" / "t" / "speech.wav").write_bytes(b"RIFF")
    (heads / "s.png").write_bytes(b"png")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    store = MediaStore(tmp_path / "media", ttl_s=0.3)
    urls, rest = store.publish_extras({"sticker": {"path": str(heads / "s.png"), "score": 0.5},
                                       "avatar": {"audio": "avatar/t/speech.wav", "video": "../secret.png",
                                                  "reference": "r.png", "duration": 1.0}}, heads)
    assert set(urls) == {"sticker_url", "avatar_audio_url"}  # the path outside the heads folder is not published
    assert rest == {"sticker": {"score": 0.5}, "avatar": {"duration": 1.0}} and secret.exists()
    name = urls["sticker_url"].removeprefix("/media/")
    assert len(name) == 36 and name.endswith(".png") and store.path_of(name).read_bytes() == b"png"
    assert store.path_of("../" + name) is None and store.path_of(name[:-4] + ".txt") is None
    time.sleep(0.35)
    assert store.path_of(name) is None and store.sweep() == 2 and not (store.root / name).exists()


def test_media_route_rejects_bad_names(served):
    _, _, client = served()
    for name in ("..%2Fsecret.png", "x.png", "A" * 32 + ".png"):
        r = client.get(f"/media/{name}")
        assert r.status_code == 404 and "error" in r.json()


def test_clients_that_go_away_free_their_queue_slots():
    pipe = StandInPipe()
    pipe.gate.clear()
    backend, app = build(None, standin_cfg(max_queue=4, max_batch=1, max_wait_ms=0), pipe=pipe)
    server = LiveServer(app)
    body = {"messages": [{"role": "user", "content": "等等"}]}
    try:
        with ThreadPoolExecutor(1) as ex:
            running = ex.submit(httpx.post, f"{server.url}/v1/chat/completions", json=body, timeout=30)
            _wait(lambda: pipe.calls == [1])
            with pytest.raises(httpx.ReadTimeout):  # a plain request whose client gives up
                httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=0.5)
            with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True},
                              timeout=10) as r:  # a stream closed after its first chunk
                assert next(r.iter_lines()).startswith("data: ")
                _wait(lambda: backend.engine.waiting == 1 or backend.engine.stats.cancelled >= 1)
            _wait(lambda: backend.engine.waiting == 0 and backend.engine.stats.cancelled == 2)
            pipe.gate.set()
            assert running.result().status_code == 200
        assert [r.utterance for r in pipe.seen] == ["等等"]  # the two abandoned requests never reached the model
    finally:
        server.stop()
        backend.close()


def test_page_has_analytics_off_and_is_built_from_the_backend(served):
    pytest.importorskip("gradio")
    import os

    from elmd.serve.page import build_page

    _, backend, _ = served()
    blocks = build_page(backend)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and blocks.analytics_enabled is False
    assert not getattr(blocks, "share", False)
    ids = {getattr(b, "elem_id", None) for b in blocks.blocks.values()}
    assert {"elmd-chat", "elmd-input", "elmd-video", "elmd-emotion", "elmd-demo", "elmd-regen", "elmd-clear"} <= ids


def test_container_sniffing_reads_the_bytes_not_the_name():
    from elmd.serve.videos import sniff

    assert sniff(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00") == "mp4"
    assert sniff(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == "mp4"  # QuickTime .mov
    assert sniff(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01") == "webm"
    assert sniff(b"RIFF\x24\x00\x00\x00AVI LIST") == "avi"
    assert sniff(b"RIFF\x24\x00\x00\x00WAVEfmt ") is None  # a wav is RIFF too
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR") is None and sniff(b"ftyp") is None


def test_page_shows_a_published_sticker_beside_the_reply(served):
    pytest.importorskip("gradio")
    from elmd.serve.page import _side
    from elmd.serve.protocol import ElmdInfo

    _, backend, _ = served()
    (backend.heads_dir / "s.png").write_bytes(b"png")
    urls, _ = backend.media.publish_extras({"sticker": {"path": "s.png"}}, backend.heads_dir)
    info = ElmdInfo(emotion="happy", emotion_word="高兴", demonstration="参考", sticker_url=urls["sticker_url"],
                    avatar_video_url="/media/" + "x" * 32 + ".mp4")
    emotion, demo, sticker, avatar = _side(backend, {"reply": "好", "info": info})
    assert emotion == "**预测情绪：** 高兴（happy）" and demo == "参考" and avatar is None  # unknown media: not shown
    assert Path(sticker).read_bytes() == b"png" and Path(sticker).parent == backend.media.root
