"""Six-part prompt: layout, label masking (rep / eerg), video positions, truncation rules, collate."""

from __future__ import annotations

import pytest
import torch
from fixtures_llm import DIALOGUES

from elmd.data.labels import LabelSet
from elmd.data.schema import build_samples
from elmd.errors import ElmdError
from elmd.models.config import PromptConfig
from elmd.models.prompt import IGNORE, collate, encode_prompt, encode_sample, label_word_ids, parse_output

LABELS = LabelSet()
SAMPLES = {s.sample_id: s for s in build_samples(DIALOGUES)}
DEMO = "参考回复（情绪：高兴）：你好呀！"


def text(tok, ids):
    return tok.decode(ids, skip_special=False)


def target_of(enc):
    return [i for i, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE]


def test_layout_has_the_six_parts_in_order(tiny_tokenizer):
    s = SAMPLES["d1#3"]  # 3 history turns, background, video on the utterance
    enc = encode_sample(s, DEMO, tiny_tokenizer, LABELS, "rep", 6, PromptConfig())
    ids, vm = enc["input_ids"], enc["video_mask"]
    assert ids[:2] == [tiny_tokenizer.gmask_id, tiny_tokenizer.sop_id]
    first_v = vm.index(True)
    before = text(tiny_tokenizer, ids[:first_v])
    after = text(tiny_tokenizer, [i for i, m, lab in zip(ids, vm, enc["labels"]) if not m and lab == IGNORE][first_v:])
    assert before.startswith("[gMASK]sop[Round 1]\n\n问：请根据背景、对话历史、当前话语及其视频（如有），判断你回复时应当表达的情感，从“高兴、惊讶、悲伤、厌恶、愤怒、恐惧、平静”中选择一个。\n背景：")
    assert before.endswith(
        "\n背景：两个老同学在咖啡馆偶遇。\n对话历史：\n王芳：哎，这不是李雷吗？好久不见！\n李雷：王芳！真巧，你也在这儿喝咖啡？"
        "\n王芳：是啊，我刚下班，顺便过来坐坐。\n当前话语：李雷：太好了，我们好好聊聊吧，这些年你过得怎么样？\n视频：")
    assert after == "\n" + DEMO + "\n\n答："
    # the 6 video positions are consecutive placeholder ids
    assert vm[first_v:first_v + 6] == [True] * 6 and sum(vm) == 6
    assert set(ids[first_v:first_v + 6]) == {tiny_tokenizer.mask_id}


def test_rep_labels_are_the_emotion_word_only(tiny_tokenizer):
    s = SAMPLES["d1#0"]  # response emotion: happy
    enc = encode_sample(s, "", tiny_tokenizer, LABELS, "rep", 4, PromptConfig())
    word = tiny_tokenizer.encode("高兴")
    assert len(enc["labels"]) == len(enc["input_ids"]) == len(enc["video_mask"])
    assert enc["labels"][-len(word):] == word == enc["input_ids"][-len(word):]
    assert all(lab == IGNORE for lab in enc["labels"][:-len(word)])
    assert word == label_word_ids(tiny_tokenizer, LABELS)[LABELS.index("happy")]
    assert "参考回复" not in text(tiny_tokenizer, enc["input_ids"])  # empty demonstration: part R left out


def test_eerg_labels_are_word_response_eos(tiny_tokenizer):
    s = SAMPLES["d1#4"]
    enc = encode_sample(s, DEMO, tiny_tokenizer, LABELS, "eerg", 4, PromptConfig())
    target = target_of(enc)
    assert target[-1] == tiny_tokenizer.eos_id
    assert tiny_tokenizer.decode(target) == "悲伤\n真的吗？那你现在还好吧？"
    assert enc["input_ids"][-len(target):] == target
    assert parse_output(tiny_tokenizer.decode(target), LABELS) == ("sad", "真的吗？那你现在还好吧？")
    assert parse_output("高兴好啊", LABELS) == ("happy", "好啊")
    assert parse_output("不知道", LABELS) == (None, "不知道")


def test_no_video_positions_without_video(tiny_tokenizer):
    with_v = SAMPLES["d1#0"]
    without_v = SAMPLES["d1#4"]  # utterance has no video
    assert without_v.video is None
    for s, n, has in [(without_v, 40, None), (with_v, 0, None), (with_v, 40, False)]:
        enc = encode_prompt(s, "", tiny_tokenizer, LABELS, "rep", n, PromptConfig(), has_video=has)
        assert not any(enc["video_mask"]) and "\n视频：" not in text(tiny_tokenizer, enc["input_ids"])
    enc = encode_prompt(with_v, DEMO, tiny_tokenizer, LABELS, "rep", 40, PromptConfig(use_demonstration=False))
    assert sum(enc["video_mask"]) == 40 and "参考回复" not in text(tiny_tokenizer, enc["input_ids"])


def test_truncation_drops_oldest_history_first(tiny_tokenizer):
    s = SAMPLES["d1#4"]  # 4 history turns
    full = encode_sample(s, DEMO, tiny_tokenizer, LABELS, "eerg", 8, PromptConfig(), has_video=True)
    n_prompt = sum(lab == IGNORE for lab in full["labels"])
    oldest = tiny_tokenizer.encode("\n王芳：哎，这不是李雷吗？好久不见！")
    cfg = PromptConfig(max_source_length=n_prompt - 1)
    cut = encode_sample(s, DEMO, tiny_tokenizer, LABELS, "eerg", 8, cfg, has_video=True)
    prompt = [i for i, lab in zip(cut["input_ids"], cut["labels"]) if lab == IGNORE]
    assert len(prompt) == n_prompt - len(oldest)  # exactly the oldest turn went
    body = text(tiny_tokenizer, prompt)
    assert "好久不见" not in body and "真巧" in body and "\n" + DEMO in body
    assert target_of(cut) == target_of(full) and sum(cut["video_mask"]) == 8


def test_truncation_after_history_cuts_demo_then_background_never_target_or_video(tiny_tokenizer):
    s = SAMPLES["d1#4"]
    no_hist = s.__class__(**{**s.__dict__, "history": []})
    bare = encode_prompt(no_hist, "", tiny_tokenizer, LABELS, "eerg", 8, PromptConfig(), has_video=True)
    budget = len(bare["input_ids"]) + 3  # room for 3 tokens of demonstration, none for history
    enc = encode_sample(s, DEMO, tiny_tokenizer, LABELS, "eerg", 8, PromptConfig(max_source_length=budget), has_video=True)
    prompt = [i for i, lab in zip(enc["input_ids"], enc["labels"]) if lab == IGNORE]
    body = text(tiny_tokenizer, prompt)
    assert len(prompt) == budget
    assert "\n对话历史：" not in body and "背景：两个老同学在咖啡馆偶遇。" in body and DEMO not in body
    assert sum(enc["video_mask"]) == 8 and tiny_tokenizer.decode(target_of(enc)) == "悲伤\n真的吗？那你现在还好吧？"
    with pytest.raises(ElmdError, match="max_source_length"):
        encode_sample(s, DEMO, tiny_tokenizer, LABELS, "eerg", 500, PromptConfig(max_source_length=100), has_video=True)


def test_target_length_cuts_response_but_keeps_word_and_eos(tiny_tokenizer):
    s = SAMPLES["d1#4"]
    enc = encode_sample(s, "", tiny_tokenizer, LABELS, "eerg", 0, PromptConfig(max_target_length=5))
    target = target_of(enc)
    word = tiny_tokenizer.encode("悲伤")
    assert len(target) == 5 and target[:len(word)] == word and target[-1] == tiny_tokenizer.eos_id


def test_collate_left_pads_everything(tiny_tokenizer):
    a = encode_sample(SAMPLES["d2#0"], "", tiny_tokenizer, LABELS, "rep", 5, PromptConfig())
    b = encode_sample(SAMPLES["d1#4"], DEMO, tiny_tokenizer, LABELS, "rep", 5, PromptConfig())  # no video
    batch = collate([a, b], tiny_tokenizer.pad_id)
    T = max(len(a["input_ids"]), len(b["input_ids"]))
    pad = T - len(a["input_ids"])
    assert pad > 0 and batch["input_ids"].shape == (2, T)
    assert batch["input_ids"][0, :pad].tolist() == [tiny_tokenizer.pad_id] * pad
    assert batch["input_ids"][0, pad:].tolist() == a["input_ids"]
    assert batch["attention_mask"][0].tolist() == [0] * pad + [1] * len(a["input_ids"])
    assert batch["labels"][0].tolist() == [IGNORE] * pad + a["labels"]
    assert batch["video_mask"][0].tolist() == [False] * pad + a["video_mask"]
    assert batch["video_present"].tolist() == [True, False]
    assert batch["video_mask"].dtype == torch.bool
    prompts = collate([encode_prompt(SAMPLES["d2#0"], "", tiny_tokenizer, LABELS, "rep", 5, PromptConfig())], 0)
    assert "labels" not in prompts


def test_unknown_stage_and_label_are_errors(tiny_tokenizer):
    with pytest.raises(ElmdError, match="unknown stage"):
        encode_sample(SAMPLES["d2#0"], "", tiny_tokenizer, LABELS, "pretrain", 0, PromptConfig())
    small = LabelSet(("happy", "sad"))
    with pytest.raises(ElmdError, match="not in the label set"):
        encode_sample(SAMPLES["d2#0"], "", tiny_tokenizer, small, "rep", 0, PromptConfig())  # target: fear
