"""`elmd serve` over the tiny trained run (the ``gen_run`` fixture: demonstrations + video) on a live
uvicorn at a random 127.0.0.1 port, called with the official ``openai`` client (plain and
streaming), video uploads (good, corrupt, not a video, too large; the server keeps serving), and
concurrent requests batched into fewer model calls with the answers of one-at-a-time serving."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")

import httpx  # noqa: E402
from serve_standin import LiveServer

from elmd.serve import ServeConfig, build

KEY = "test-key"


@pytest.fixture(scope="module")
def live(gen_run):
    from elmd.inference import load

    pipe = load(gen_run.eerg)
    cfg = ServeConfig(api_key=KEY, page=False, max_batch=8, max_wait_ms=400, max_upload_mb=0.5, request_timeout_s=60)
    backend, app = build(None, cfg, pipe=pipe)
    server = LiveServer(app)
    yield server, backend, pipe
    server.stop()
    backend.close()


@pytest.fixture(scope="module")
def client(live):
    from openai import OpenAI

    return OpenAI(base_url=live[0].url + "/v1", api_key=KEY, timeout=60, max_retries=0)


def upload(server, name, data):
    return httpx.post(f"{server.url}/v1/elmd/videos", files={"file": (name, data, "video/mp4")},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def test_openai_client_plain_and_streaming_agree(live, client):
    _, _, pipe = live
    assert [m.id for m in client.models.list().data] == ["eerg"]
    messages = [{"role": "system", "content": "两个朋友在聊天。"}, {"role": "user", "content": "你听说了吗？"}]
    plain = client.chat.completions.create(model="eerg", messages=messages, seed=7, max_tokens=12)
    content = plain.choices[0].message.content
    extra = plain.model_extra["elmd"]
    want = pipe.respond("你听说了吗？", background="两个朋友在聊天。", seed=7, max_new_tokens=12, speaker="用户",
                        responder="助手")
    assert content == want.response and extra["emotion"] == want.emotion and extra["emotion_word"] == want.emotion_word
    assert extra["demonstration"] == want.demonstration and extra["demonstration"].startswith("参考回复")
    assert plain.choices[0].finish_reason in ("stop", "length") and extra["new_tokens"] == want.new_tokens
    stream = client.chat.completions.create(model="eerg", messages=messages, seed=7, max_tokens=12, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == content
    assert chunks[-1].model_extra["elmd"]["emotion_word"] == want.emotion_word


def test_uploads_good_corrupt_not_video_too_large_and_the_server_keeps_serving(live, client, gen_run):
    server, backend, pipe = live
    bad = upload(server, "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # mp4 header, garbage body
    assert bad.status_code == 422 and "cannot be decoded" in bad.json()["error"]["message"]
    text = upload(server, "clip.mp4", "不是视频".encode() * 20)
    assert text.status_code == 415 and text.json()["error"]["type"] == "invalid_request_error"
    big = upload(server, "big.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (600 * 1024))
    assert big.status_code == 413
    assert len(backend.videos) == 0 and not list(backend.videos.root.iterdir())  # refused files are not kept
    ok = upload(server, "warm.mp4", (gen_run.folder / "warm.mp4").read_bytes())
    assert ok.status_code == 200 and ok.json()["format"] == "mp4"
    vid = ok.json()["id"]
    path = str(backend.videos.path_of(vid))
    assert path in pipe.store.memo  # decoded once at upload; turns reuse the features
    misses = pipe.store.stats.misses
    reply = client.chat.completions.create(model="eerg", messages=[{"role": "user", "content": "你看我"}], seed=3,
                                           extra_body={"elmd": {"video_id": vid}})
    want = pipe.respond("你看我", video=path, seed=3, speaker="用户", responder="助手")
    assert reply.choices[0].message.content == want.response
    parts = client.chat.completions.create(model="eerg", seed=3, messages=[
        {"role": "user", "content": [{"type": "text", "text": "你看我"}, {"type": "video", "video_id": vid}]}])
    assert parts.choices[0].message.content == want.response
    assert pipe.store.stats.misses == misses  # no turn decoded the video again
    r = httpx.get(f"{server.url}/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_concurrent_requests_are_batched_and_equal_one_at_a_time(live):
    server, backend, _ = live
    utterances = ["你回来啦", "今天好累", "我考过了！", "别烦我", "下雨了", "我们去吃饭吧"]

    def ask(k):
        r = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {KEY}"},
                       json={"messages": [{"role": "user", "content": utterances[k]}], "seed": 50 + k})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"], r.json()["elmd"]["emotion"]

    before = backend.engine.stats.batches
    with ThreadPoolExecutor(len(utterances)) as ex:
        together = list(ex.map(ask, range(len(utterances))))
    batched_calls = backend.engine.stats.batches - before
    assert batched_calls < len(utterances) and backend.engine.stats.largest_batch > 1
    alone = [ask(k) for k in range(len(utterances))]
    assert together == alone


def test_avatar_head_media_are_served_under_unguessable_names(live):
    _, _, pipe = live
    backend, app = build(None, ServeConfig(page=False, heads=("avatar",), media_ttl_s=60), pipe=pipe.with_heads(["avatar"]))
    server = LiveServer(app)
    try:
        r = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "你回来啦"}], "seed": 1, "max_tokens": 8})
        info = r.json()["elmd"]
        assert r.status_code == 200 and info["heads"]["avatar"]["frames"] > 0, info
        video = httpx.get(server.url + info["avatar_video_url"], timeout=30)
        audio = httpx.get(server.url + info["avatar_audio_url"], timeout=30)
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        assert len(info["avatar_video_url"].removeprefix("/media/")) == 36
        assert not list(backend.heads_dir.iterdir())  # the heads' work files are gone; only published media stay
        assert "reference" not in info["heads"]["avatar"]  # no server path leaks
    finally:
        server.stop()
        backend.close()
