"""The six-part ELMD prompt (paper Sec. 3.4, Fig. 4) inside ChatGLM2's round format, and its labels.

The parts are the instruction I, background B, history H, utterance u, video tokens E_v and the
retrieved demonstration R. One sample is encoded as (``<v>`` = a video placeholder position whose
embedding :func:`elmd.models.splice.splice_video` replaces by a video token)::

    [gMASK] sop [Round 1]

    问：{I}
    背景：{B}
    对话历史：
    {speaker}：{text}            (one line per history turn, oldest first)
    当前话语：{speaker}：{u}
    视频：<v><v>...<v>            (m + num_query_tokens positions)
    {R}                          (e.g. 参考回复（情绪：高兴）：那太好了！ — its own instruction included)

    答：{target}

I (stage rep): 请根据背景、对话历史、当前话语及其视频（如有），判断你回复时应当表达的情感，从
"高兴、惊讶、悲伤、厌恶、愤怒、恐惧、平静"中选择一个。  (stage eerg adds: 再给出带有该情感的回复。)

A part that is empty is left out with its line (no background, no history, no video, no
demonstration). Targets: stage ``rep`` = the emotion word of the response (e.g. ``高兴``); stage
``eerg`` = emotion word, newline, response, eos. Labels are -100 everywhere except the target.
With ``train.target=meta`` (:func:`elmd.stages.run_target`), stage eerg's answer part is the
meta-response block (:mod:`elmd.data.meta_response`): the prompt ends ``答：情绪：`` and the target
is the rest of the block from the emotion word on (word, newline, 场景 ... 回复：response, eos),
so the constrained emotion decision scores and forces the word at the same first answer position.

Truncation (``prompt.max_source_length`` counts every prompt token, video positions included):
history turns are dropped from the oldest; then the end of the demonstration, the end of the
background and the start of the utterance are cut. The target and the video positions are never
cut (the target is bounded by ``prompt.max_target_length`` by cutting the end of the response,
never the emotion word, the meta block's other lines or eos). Parts are tokenized one by one and concatenated.
"""

from __future__ import annotations

from typing import Sequence

import torch

from elmd.data.labels import M3ED_LABELS, LabelSet
from elmd.data.meta_response import OPEN as META_OPEN, format_meta, meta_of_sample
from elmd.data.schema import Sample, Turn
from elmd.errors import ElmdError
from elmd.models.config import PromptConfig
from elmd.models.tokenizer import ROUND_TEMPLATE, left_pad
from elmd.stages import get_stage

IGNORE = -100
_TASK = "请根据背景、对话历史、当前话语及其视频（如有），判断你回复时应当表达的情感，从“{choices}”中选择一个。"
INSTRUCTIONS = {"emotion": _TASK, "emotion_response": _TASK + "再给出带有该情感的回复。",
                "meta": _TASK + "再分行给出情绪、场景、行为、性别、年龄、语气和带有该情感的回复。"}
"""The instruction I of each prompt target (:data:`elmd.stages.TARGETS`)."""
HEAD, TAIL = ROUND_TEMPLATE.split("{q}")


def instruction(stage: str, labels: LabelSet, target: str | None = None) -> str:
    """Instruction I of ``stage`` (its target, or ``target`` when given, decides: emotion only,
    emotion + reply, or the meta-response block)."""
    return INSTRUCTIONS[target or get_stage(stage).target].format(choices="、".join(labels.word(i) for i in labels.ids))


def template_strings() -> list[str]:
    """Fixed strings of the template (added to the tiny tokenizer's training text). The meta
    target's strings are not among them (they would change every tiny tokenizer): a run with
    ``train.target=meta`` adds :func:`elmd.data.meta_response.meta_strings` itself."""
    labels = LabelSet(M3ED_LABELS)
    choices = "、".join(labels.word(i) for i in labels.ids)
    return [INSTRUCTIONS[t].format(choices=choices) for t in ("emotion", "emotion_response")] + [
        HEAD.format(n=1), TAIL, "背景：", "对话历史：", "当前话语：", "视频：", "参考回复（情绪：",
    ] + [labels.word(i) for i in labels.ids]


def _turn_line(turn: Turn) -> str:
    return f"{turn.speaker}：{turn.text}" if turn.speaker else turn.text


def encode_prompt(sample: Sample, demonstration: str, tokenizer, labels: LabelSet, stage: str,
                  n_video_tokens: int, cfg: PromptConfig, has_video: bool | None = None,
                  target: str | None = None) -> dict:
    """Prompt ids without target (inference): ``input_ids`` and ``video_mask`` lists.

    Video positions are added when ``n_video_tokens`` > 0 and the sample has a video
    (``has_video`` overrides the check of ``sample.video``); ``target``: the prompt target
    (:func:`elmd.stages.run_target`; None = the stage's own).
    """
    enc = tokenizer.encode
    with_video = n_video_tokens > 0 and (sample.video is not None if has_video is None else has_video)
    head = tokenizer.prefix_ids() + enc(HEAD.format(n=1)) + enc(instruction(stage, labels, target))
    background = enc("\n背景：" + sample.background) if sample.background else []
    history = [enc("\n" + _turn_line(t)) for t in sample.history]
    hist_head = enc("\n对话历史：")
    utt_head = enc("\n当前话语：")
    utterance = enc(_turn_line(sample.utterance))
    video_head = enc("\n视频：") if with_video else []
    n_video = n_video_tokens if with_video else 0
    demo = enc("\n" + demonstration) if demonstration and cfg.use_demonstration else []
    tail = enc(TAIL + (META_OPEN if target == "meta" else ""))

    def total() -> int:
        fixed = len(head) + len(utt_head) + len(utterance) + len(video_head) + n_video + len(tail)
        hist = len(hist_head) + sum(map(len, history)) if history else 0
        return fixed + len(background) + hist + len(demo)

    budget = cfg.max_source_length
    while history and total() > budget:
        history.pop(0)  # oldest turn first
    for cut in (demo, background):  # cut their ends, in place
        over = total() - budget
        if over > 0:
            del cut[max(len(cut) - over, 0):]
    over = total() - budget
    if over > 0:
        utterance = utterance[min(over, len(utterance)):]
    if total() > budget:
        raise ElmdError(f"prompt.max_source_length={budget} is too small for the instruction, video tokens ({n_video}) "
                        f"and template ({total()} tokens) — raise prompt.max_source_length")
    ids = head + background + ((hist_head + sum(history, [])) if history else []) + utt_head + utterance
    ids += video_head
    video_mask = [False] * len(ids) + [True] * n_video
    ids += [tokenizer.mask_id] * n_video
    ids += demo + tail
    video_mask += [False] * (len(ids) - len(video_mask))
    return {"input_ids": ids, "video_mask": video_mask}


def target_ids(sample: Sample, tokenizer, labels: LabelSet, stage: str, cfg: PromptConfig,
               target: str | None = None) -> list[int]:
    """rep: the emotion word; eerg: emotion word + newline + response + eos (response cut to fit);
    ``target="meta"``: the meta block after ``情绪：`` + eos (response cut to fit)."""
    if sample.target_emotion not in labels:
        raise ElmdError(f"sample {sample.sample_id}: target emotion '{sample.target_emotion}' is not in the label set {labels.ids}")
    word = tokenizer.encode(labels.word(sample.target_emotion))
    if target == "meta":
        return _meta_target(sample, tokenizer, labels, word, cfg)
    if not get_stage(stage).generates_response:
        return word
    response = tokenizer.encode("\n" + sample.response.text)
    room = max(cfg.max_target_length - len(word) - 1, 0)
    return word + response[:room] + [tokenizer.eos_id]


def _meta_target(sample: Sample, tokenizer, labels: LabelSet, word: list[int], cfg: PromptConfig) -> list[int]:
    block = format_meta(meta_of_sample(sample), {i: labels.word(i) for i in labels.ids})
    header, _, reply = block[len(META_OPEN) + len(labels.word(sample.target_emotion)):].partition("回复：")
    fixed = word + tokenizer.encode(header + "回复：")
    room = cfg.max_target_length - len(fixed) - 1
    if room < 1:
        raise ElmdError(f"prompt.max_target_length={cfg.max_target_length} leaves no room for the reply after the meta "
                        f"block's other lines ({len(fixed)} tokens) — raise prompt.max_target_length (e.g. 96)")
    return fixed + tokenizer.encode(reply)[:room] + [tokenizer.eos_id]


def encode_sample(sample: Sample, demonstration: str, tokenizer, labels: LabelSet, stage: str,
                  n_video_tokens: int, cfg: PromptConfig, has_video: bool | None = None,
                  target: str | None = None) -> dict:
    """Training example: ``input_ids``, ``labels`` (-100 except the target) and ``video_mask``
    (``target``: the prompt target, :func:`elmd.stages.run_target`; None = the stage's own)."""
    out = encode_prompt(sample, demonstration, tokenizer, labels, stage, n_video_tokens, cfg, has_video, target)
    answer = target_ids(sample, tokenizer, labels, stage, cfg, target)
    out["labels"] = [IGNORE] * len(out["input_ids"]) + answer
    out["input_ids"] = out["input_ids"] + answer
    out["video_mask"] = out["video_mask"] + [False] * len(answer)
    return out


def collate(features: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded batch: input_ids, attention_mask, labels (-100 pad), video_mask, video_present [B]."""
    batch = left_pad([f["input_ids"] for f in features], pad_id)
    width = batch["input_ids"].shape[1]
    labels = torch.full_like(batch["input_ids"], IGNORE)
    video = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    for b, f in enumerate(features):
        n = len(f["input_ids"])
        if "labels" in f:
            labels[b, width - n:] = torch.tensor(f["labels"], dtype=torch.long)
        video[b, width - n:] = torch.tensor(f["video_mask"], dtype=torch.bool)
    if any("labels" in f for f in features):
        batch["labels"] = labels
    batch["video_mask"] = video
    batch["video_present"] = video.any(dim=1)
    return batch


def label_word_ids(tokenizer, labels: LabelSet) -> list[list[int]]:
    """Token ids of each label's word, in label order (stage rep: argmax of their likelihood)."""
    return [tokenizer.encode(labels.word(i)) for i in labels.ids]


def parse_output(text: str, labels: LabelSet) -> tuple[str | None, str]:
    """Split a generated eerg answer into (emotion id or None, response text)."""
    first, _, rest = text.strip().partition("\n")
    label = labels.from_word(first.strip())
    if label is None:
        for i in labels.ids:  # tolerate a word glued to the response
            if first.startswith(labels.word(i)):
                return i, (first[len(labels.word(i)):] + ("\n" + rest if rest else "")).strip()
        return None, text.strip()
    return label, rest.strip()
