"""The web chat page of `elmd serve` at ``/`` (issue 16; anchors: ChatGLM2-6B's ``web_demo.py``,
Video-ChatGPT's demo): a ``gr.Blocks`` built by :func:`build_page` from the
:class:`~elmd.serve.backend.Backend` (tests pass a backend over a stand-in pipeline), mounted on the
API's FastAPI app by :func:`mount_page`. Analytics are off and nothing is shared (no ``share=True``).

The page keeps the conversation in its own state (one list per browser tab; "清空" empties it), so
a long chat costs the server nothing between turns; each turn goes through the same batching engine
as the API. Per reply it shows the predicted emotion (in the reply and beside it), the retrieved
demonstration, and, with the heads on, the sticker image and the avatar video. A video uploaded in
the box is checked and decoded at once (an error is shown and the page carries on) and goes with
the next message only.
"""

from __future__ import annotations

import logging
import os
import random

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from elmd.errors import ElmdError  # noqa: E402
from elmd.serve.engine import QueueFull, RequestTimeout  # noqa: E402
from elmd.serve.protocol import ChatCompletionRequest, ChatMessage, ElmdOptions  # noqa: E402

log = logging.getLogger("elmd.serve")
TITLE = "ELMD 情感多模态对话"
NO_EMOTION = "**预测情绪：** –"


def _messages(turns: list[dict]) -> list[ChatMessage]:
    out = []
    for t in turns:
        out.append(ChatMessage(role="user", content=t["user"]))
        if t.get("reply") is not None:
            out.append(ChatMessage(role="assistant", content=t["reply"]))
    return out


def _chat_view(turns: list[dict]) -> list[dict]:
    view = []
    for t in turns:
        view.append({"role": "user", "content": t["user"] + ("（附视频）" if t.get("video") else "")})
        if t.get("reply") is not None:
            word = t.get("emotion_word") or "未知"
            view.append({"role": "assistant", "content": f"{t['reply']}\n\n*（情绪：{word}）*"})
    return view


def _side(backend, turn: dict | None):
    """(emotion markdown, demonstration, sticker path, avatar path) of the latest answered turn."""
    if not turn or turn.get("reply") is None:
        return NO_EMOTION, "", None, None
    info = turn["info"]

    def path(url: str | None) -> str | None:  # a /media/ URL as the file gradio shows
        found = backend.media.path_of(url.rsplit("/", 1)[-1]) if url else None
        return str(found) if found else None
    emotion = f"**预测情绪：** {info.emotion_word or '未知'}" + (f"（{info.emotion}）" if info.emotion else "")
    return emotion, info.demonstration or "（无）", path(info.sticker_url), path(info.avatar_video_url)


def build_page(backend) -> gr.Blocks:
    """The chat page over ``backend`` (:class:`~elmd.serve.backend.Backend` or a stand-in with the
    same ``request_of`` / ``answer`` / ``videos`` / ``media``)."""
    heads = set(backend.cfg.heads)

    async def answer(turns: list[dict], seed: int):
        last = turns[-1]
        body = ChatCompletionRequest(messages=_messages(turns[:-1]) + [ChatMessage(role="user", content=last["user"])],
                                     seed=seed, elmd=ElmdOptions(video_id=last.get("video")))
        result = await backend.answer(backend.request_of(body))
        last.update(reply=result.content, emotion_word=result.elmd.emotion_word, info=result.elmd)

    async def send(message: str, turns: list[dict], video_id: str | None):
        message = (message or "").strip()
        if not message:
            return (gr.update(), turns, _chat_view(turns), video_id, gr.update(), "请输入内容。",
                    *_side(backend, turns[-1] if turns else None))
        turns = turns + [{"user": message, "video": video_id, "reply": None}]
        try:
            await answer(turns, random.randrange(2 ** 31))
        except QueueFull:
            turns, status = turns[:-1], "服务器繁忙，请稍后再试。"
        except RequestTimeout:
            turns, status = turns[:-1], "回答超时，请重试。"
        except ElmdError as e:
            turns, status = turns[:-1], f"出错了：{e}"
        else:
            return ("", turns, _chat_view(turns), None, None, "", *_side(backend, turns[-1]))
        return (gr.update(), turns, _chat_view(turns), video_id, gr.update(), status,
                *_side(backend, turns[-1] if turns else None))

    async def regenerate(turns: list[dict]):
        if not turns:
            return turns, _chat_view(turns), "还没有可以重新生成的回复。", *_side(backend, None)
        turns = turns[:-1] + [{**turns[-1], "reply": None, "video": None}]  # the upload may have expired
        try:
            await answer(turns, random.randrange(2 ** 31))
            status = ""
        except ElmdError as e:
            turns, status = turns[:-1], f"出错了：{e}"
        return turns, _chat_view(turns), status, *_side(backend, turns[-1] if turns else None)

    async def upload(path: str | None):
        if not path:
            return None, ""
        try:
            video = await backend.videos.add_file(path)
        except ElmdError as e:
            return None, f"视频无法使用：{e}"
        except Exception:  # noqa: BLE001  (logged; the page carries on)
            log.exception("page upload failed")
            return None, "视频无法使用：服务器无法读取这个文件。"
        return video.id, "视频已上传，将随下一句话发送。"

    def clear():
        return [], [], None, None, "", NO_EMOTION, "", None, None

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\n输入一句话（可附一段说话人的视频），模型先判断回复的情绪，再生成回复。")
        turns, video_id = gr.State([]), gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="对话", height=420, elem_id="elmd-chat")
                text = gr.Textbox(label="输入", placeholder="在这里输入，回车发送", elem_id="elmd-input")
                with gr.Row():
                    send_btn = gr.Button("发送", variant="primary", elem_id="elmd-send")
                    regen_btn = gr.Button("重新生成", elem_id="elmd-regen")
                    clear_btn = gr.Button("清空", elem_id="elmd-clear")
            with gr.Column(scale=2):
                video = gr.Video(label="本轮视频（可选）", sources=["upload"], elem_id="elmd-video")
                status = gr.Markdown("", elem_id="elmd-status")
                emotion = gr.Markdown(NO_EMOTION, elem_id="elmd-emotion")
                demo_box = gr.Textbox(label="检索到的示例", interactive=False, lines=4, elem_id="elmd-demo")
                sticker = gr.Image(label="表情包", interactive=False, visible="sticker" in heads, elem_id="elmd-sticker")
                avatar = gr.Video(label="数字人", interactive=False, visible="avatar" in heads, elem_id="elmd-avatar")
        side = [emotion, demo_box, sticker, avatar]
        outs = [text, turns, chat, video_id, video, status, *side]
        send_btn.click(send, [text, turns, video_id], outs)
        text.submit(send, [text, turns, video_id], outs)
        regen_btn.click(regenerate, [turns], [turns, chat, status, *side])
        clear_btn.click(clear, None, [turns, chat, video_id, video, status, *side])
        video.upload(upload, [video], [video_id, status])
        video.clear(lambda: (None, ""), None, [video_id, status])
    demo.queue(default_concurrency_limit=backend.cfg.max_queue)
    return demo


def mount_page(app, backend):
    """``app`` with the page mounted at ``/`` (password = the API key when one is set)."""
    cfg = backend.cfg
    auth = (lambda _user, password: password == cfg.api_key) if cfg.api_key else None
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts fetched
    return gr.mount_gradio_app(app, build_page(backend), path="/", auth=auth, allowed_paths=[str(backend.media.root)],
                               ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False,
                               footer_links=[], theme=theme, max_file_size=cfg.max_upload_bytes)
