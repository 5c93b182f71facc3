"""Prompt / target lengths of a split and the micro-batch shapes they give (paper Sec. 3.4; Sec. 4.3 batch 16).

With a data split, every sample is encoded exactly as training encodes it
(:func:`elmd.models.prompt.encode_sample`: six-part prompt, truncation to
``prompt.max_source_length``, target cut to ``prompt.max_target_length``, m + Q video positions
when the sample has a video). The demonstration R is retrieved at training time; here it is
stood in for by the formatted reply of the next sample (same format and length distribution as a
retrieved reply). Token counts use the preset's tokenizer when its file is on disk; otherwise one
token per character, which bounds ChatGLM2's SentencePiece counts from above for Chinese text (its
pieces hold one or more characters; only characters outside its vocabulary take more).

Without data, every sample is as long as the config allows (prompt ``max_source_length``; target
``max_target_length`` in stage eerg, the longest label word in stage rep).

The micro-batches of one epoch are then laid out exactly as the loop does
(:func:`elmd.training.data.global_batches` / ``rank_micro_batches``): rows are left-padded to the
longest one, so memory is sized at the longest sample and time at the mean padded width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from elmd.plan.step import MicroBatch


class CharTokenizer:
    """One token per character; the ids are irrelevant (only lengths are used)."""

    pad_id, eos_id, mask_id = 0, 2, 3
    path = "chars"

    def prefix_ids(self) -> list[int]:
        return [4, 5]  # [gMASK] sop

    def encode(self, text: str) -> list[int]:
        return [6] * len(text)


@dataclass
class Lengths:
    """Prompt and target token counts of every sample of a split (or of one all-maximal batch)."""

    source: str
    """Where the lengths come from (data file and tokenizer, or the config's limits)."""
    prompt: list[int]
    target: list[int]
    video: list[bool] = field(default_factory=list)
    """Per sample: it has m + Q video positions."""
    from_data: bool = True
    """False: one batch of all-maximal samples (no epoch to speak of)."""

    @property
    def total(self) -> list[int]:
        return [p + t for p, t in zip(self.prompt, self.target)]

    def percentile(self, q: float) -> int:
        values = sorted(self.total)
        return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


@dataclass
class Layout:
    """The micro-batches of one epoch on one GPU, and the shapes the plan measures."""

    worst: MicroBatch
    """Most rows, every row as long as the longest sample: sizes the memory."""
    mean: MicroBatch
    """Mean rows, mean padded width and mean target tokens: sizes the time."""
    steps: int
    """Optimizer steps per epoch."""
    micro_per_step: int
    """Micro-batches per GPU per optimizer step (train.grad_accum, fewer for a short batch)."""
    tokens_per_step: float
    """Real (unpadded) tokens per optimizer step over all GPUs, epoch mean."""
    padded_tokens_per_step: float
    """Tokens including left padding per optimizer step over all GPUs, epoch mean."""


def tokenizer_for(cfg):
    """(tokenizer, its description): the preset's own when its file exists, else CharTokenizer."""
    from elmd.models.tokenizer import ChatGLMTokenizer

    if cfg.llm.tokenizer and Path(cfg.llm.tokenizer).is_file():
        return ChatGLMTokenizer(cfg.llm.tokenizer), f"tokenizer {cfg.llm.tokenizer}"
    if cfg.llm.preset == "chatglm2-6b" and cfg.llm.path and (Path(cfg.llm.path) / "tokenizer.model").is_file():
        return ChatGLMTokenizer(Path(cfg.llm.path) / "tokenizer.model"), f"tokenizer {cfg.llm.path}/tokenizer.model"
    return CharTokenizer(), "1 token per character (tokenizer not on disk: an upper bound)"


def lengths_from_data(cfg, stage: str, path: str | Path, tokenizer=None, note: str = "") -> Lengths:
    from elmd.data.jsonl import read_samples
    from elmd.errors import DataError
    from elmd.models.prompt import IGNORE, encode_sample
    from elmd.stages import run_target
    from elmd.training.data import labels_of, video_tokens
    from retrieval.demonstration import DEMO_INSTRUCTION

    if tokenizer is None:
        tokenizer, note = tokenizer_for(cfg)
    labels = labels_of(cfg)
    samples = read_samples(path, labels, cfg.data.max_samples)
    if not samples:
        raise DataError(path, "has no samples", "pass a prepared split (`elmd data prepare`)")
    n_video = video_tokens(cfg)
    prompt, target, video = [], [], []
    for k, s in enumerate(samples):
        other = samples[(k + 1) % len(samples)]
        demo = f"{DEMO_INSTRUCTION}（情绪：{labels.word(other.target_emotion)}）：{other.response.text}"
        enc = encode_sample(s, demo if cfg.prompt.use_demonstration else "", tokenizer, labels, stage, n_video, cfg.prompt,
                            target=run_target(stage, cfg.train.target))
        n_prompt = sum(1 for t in enc["labels"] if t == IGNORE)
        prompt.append(n_prompt)
        target.append(len(enc["input_ids"]) - n_prompt)
        video.append(any(enc["video_mask"]))
    return Lengths(f"{path} ({len(samples)} samples; {note})", prompt, target, video)


def lengths_from_limits(cfg, stage: str, tokenizer=None) -> Lengths:
    from elmd.training.data import labels_of, video_tokens

    if tokenizer is None:
        tokenizer, _ = tokenizer_for(cfg)
    labels = labels_of(cfg)
    word = max(len(tokenizer.encode(labels.word(i))) for i in labels.ids)
    target = cfg.prompt.max_target_length if stage == "eerg" else word
    n = cfg.train.batch_size
    return Lengths(f"config limits: prompt {cfg.prompt.max_source_length}, target {target} tokens, every sample",
                   [cfg.prompt.max_source_length] * n, [target] * n, [video_tokens(cfg) > 0] * n, from_data=False)


def layout(lengths: Lengths, batch_size: int, gpus: int, grad_accum: int, seed: int = 0) -> Layout:
    """Epoch 0's micro-batches on every GPU, as the training loop cuts them."""
    from elmd.training.data import global_batches, rank_micro_batches

    total = lengths.total
    batches = global_batches(len(total), batch_size, seed, 0)
    micro = [mb for b in batches for r in range(gpus) for mb in rank_micro_batches(b, r, gpus, grad_accum)]
    rows = max(len(mb) for mb in micro)
    longest = max(total)
    worst_targets = sum(sorted(lengths.target)[-rows:])
    widths = [max(total[i] for i in mb) for mb in micro]
    mean_rows = sum(len(mb) for mb in micro) / len(micro)
    mean_width = sum(widths) / len(widths)
    mean_targets = sum(lengths.target[i] for mb in micro for i in mb) / len(micro)
    video = any(lengths.video)
    per_step = max(1, math.ceil(len(micro) / (len(batches) * gpus)))
    return Layout(worst=MicroBatch(rows, longest, worst_targets, video),
                  mean=MicroBatch(max(1, round(mean_rows)), max(1, round(mean_width)), max(1, round(mean_targets)), video),
                  steps=len(batches), micro_per_step=per_step,
                  tokens_per_step=sum(total) / len(batches),
                  padded_tokens_per_step=sum(len(mb) * w for mb, w in zip(micro, widths)) / len(batches))
