"""Session fixtures of the LLM / prompt area: sample dialogues, the tiny tokenizer, the tiny GLM."""

from __future__ import annotations

import json

import pytest

from elmd.data.schema import Dialogue, Turn

DIALOGUES = [
    Dialogue("d1", "s1", "两个老同学在咖啡馆偶遇。", [
        Turn("王芳", "哎，这不是李雷吗？好久不见！", "surprise", "videos/d1_0.mp4"),
        Turn("李雷", "王芳！真巧，你也在这儿喝咖啡？", "happy", "videos/d1_1.mp4"),
        Turn("王芳", "是啊，我刚下班，顺便过来坐坐。", "neutral", "videos/d1_2.mp4"),
        Turn("李雷", "太好了，我们好好聊聊吧，这些年你过得怎么样？", "happy", "videos/d1_3.mp4"),
        Turn("王芳", "唉，说来话长，去年我失业了……", "sad", None),
        Turn("李雷", "真的吗？那你现在还好吧？", "sad", "videos/d1_5.mp4"),
    ]),
    Dialogue("d2", "s1", "", [
        Turn("张伟", "你又把我的书弄丢了！", "anger", "videos/d2_0.mp4"),
        Turn("小明", "对不起，我不是故意的。", "fear", "videos/d2_1.mp4"),
        Turn("张伟", "算了，下次小心点。", "neutral", "videos/d2_2.mp4"),
    ]),
    Dialogue("d3", "s2", "深夜，宿舍里。", [
        Turn("甲", "这是什么味道？好恶心。", "disgust", "videos/d3_0.mp4"),
        Turn("乙", "哈哈，是我的臭袜子，马上拿走！", "happy", None),
        Turn("甲", "快点吧，我都快吐了。", "disgust", "videos/d3_2.mp4"),
    ]),
]


def dialogue_texts() -> list[str]:
    return [t.text for d in DIALOGUES for t in d.turns] + [d.background for d in DIALOGUES if d.background]


@pytest.fixture(scope="session")
def llm_dialogues_jsonl(tmp_path_factory):
    """The sample dialogues as canonical JSONL in a fresh folder."""
    path = tmp_path_factory.mktemp("llm_data") / "train.jsonl"
    path.write_text("".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in DIALOGUES), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from elmd.models.presets import tiny_tokenizer as build

    return build(dialogue_texts(), tmp_path_factory.mktemp("tok") / "tiny_tokenizer.model", vocab_size=600)


@pytest.fixture(scope="session")
def tiny_llm(tiny_tokenizer):
    from elmd.models.glm import random_glm, tiny_config

    return random_glm(tiny_config(tiny_tokenizer.vocab_size, tiny_tokenizer.pad_id, tiny_tokenizer.eos_id))
