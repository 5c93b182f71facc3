"""Training text of the tiny LM's pre-training (:mod:`elmd.training.lm_pretrain`), from train splits only.

Two kinds of rows, both in ChatGLM2's conventions (``[gMASK] sop`` in front, eos 2 at the end,
pad 0) and written exactly as :mod:`elmd.models.prompt` writes its parts, so the LM sees text
shaped like the prompts it will be frozen under:

* **dialogue rows** — one per dialogue, loss on every token::

      [gMASK] sop 背景：{background}
      {speaker}：{text}          (one line per turn)
      ... eos

* **prompt rows** (``lm_pretrain.prompt_share``) — one per sample of a seeded share (:func:`elmd.data.schema.build_samples`):
  stage eerg's six-part prompt (:func:`elmd.models.prompt.encode_sample`, no video positions; a
  demonstration ``参考回复（情绪：X）：...`` from another dialogue for every second sample) followed
  by its target ``{emotion word}\\n{reply} eos``. The loss is on the reply and eos only (also on
  the emotion word with ``lm_pretrain.emotion_loss``): the LM learns to answer in the prompt's
  format and to fit its reply to a *given* emotion, while which emotion to express stays for
  stages rep / eerg to learn from the video. This is what lets eerg's prefix start from a model
  that already writes `word \\n reply eos` after ``答：``.
  A ``lm_pretrain.video_share`` of these rows also has the prompt's video span, its positions
  holding the emotion word's tokens, with the loss on the word: the stand-in for BLIP-2 /
  VisualGLM's alignment pre-training, after which the LM reads the video span (stage rep's
  Linear then only has to make video features look like the word of their emotion).

Rows are packed whole into blocks of ``seq_len`` tokens (a block is closed and right-padded when
the next row does not fit; a row longer than a block is cut). Files named valid/test, or equal in
content to a valid/test split beside them, are refused (:func:`check_train_file`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from elmd.errors import ConfigError, DataError, ElmdError
from elmd.io import file_sha256

IGNORE = -100
HELDOUT_WORDS = {"valid", "validation", "dev", "test", "heldout"}


def check_train_file(path: str | Path) -> None:
    """Refuse (DataError) a file named like a valid/test split, or equal to one beside it."""
    path = Path(path)
    words = set(re.split(r"[^a-z]+", path.stem.lower()))
    fix = "pre-train on the train split only (e.g. runs/sample/data/train.jsonl)"
    if words & HELDOUT_WORDS:
        raise DataError(path, f"looks like a {sorted(words & HELDOUT_WORDS)[0]} split", fix)
    if not path.is_file():
        raise DataError(path, "dialogue file not found", "run `elmd data prepare` first or pass the right --data")
    digest = None
    for other in sorted(path.parent.glob("*.jsonl")):
        if other.resolve() == path.resolve() or not set(re.split(r"[^a-z]+", other.stem.lower())) & HELDOUT_WORDS:
            continue
        if other.stat().st_size == path.stat().st_size:
            digest = digest or file_sha256(path)
            if file_sha256(other) == digest:
                raise DataError(path, f"has the same content as {other.name}", fix)


def read_corpus(paths) -> list:
    """The dialogues of every train file, in order (each checked by :func:`check_train_file`)."""
    from elmd.data.jsonl import read_dialogues

    dialogues = []
    for p in paths:
        check_train_file(p)
        dialogues += read_dialogues(p, resolve_videos=False)
    return dialogues


def turn_line(turn) -> str:
    return f"{turn.speaker}：{turn.text}" if turn.speaker else turn.text


def tokenizer_texts(dialogues) -> list[str]:
    """What the SentencePiece model is trained on: every turn line and every background."""
    return [turn_line(t) for d in dialogues for t in d.turns] + [d.background for d in dialogues if d.background]


def split_heldout(dialogues, share: float, seed: int) -> tuple[list, list]:
    """(train, held-out) dialogues; at least one of each when there are two or more."""
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    n = min(max(1, round(share * len(dialogues))), len(dialogues) - 1) if len(dialogues) > 1 else 0
    held = set(order[:n])
    return [d for i, d in enumerate(dialogues) if i not in held], [d for i, d in enumerate(dialogues) if i in held]


@dataclass
class Row:
    """One training row: token ids and their labels (-100 = no loss)."""

    ids: list[int]
    labels: list[int]


def dialogue_row(dialogue, tok) -> Row:
    text = ("背景：" + dialogue.background + "\n" if dialogue.background else "") + "\n".join(map(turn_line, dialogue.turns))
    ids = tok.prefix_ids() + tok.encode(text) + [tok.eos_id]
    return Row(ids, [IGNORE, IGNORE] + ids[2:])


def prompt_rows(dialogues, tok, seq_len: int, seed: int, emotion_loss: bool = False, share: float = 1.0,
                video_share: float = 0.0, video_tokens: int = 36) -> list[Row]:
    """Stage eerg's prompt + `word \\n reply eos` for a seeded ``share`` of the samples of
    ``dialogues`` (module docstring); a seeded ``video_share`` of them with a video span holding
    the emotion word (loss on the word in those rows)."""
    from elmd.data.labels import LabelSet
    from elmd.data.schema import build_samples
    from elmd.models.config import PromptConfig
    from elmd.models.prompt import encode_sample

    labels = LabelSet()
    samples = [s for s in build_samples(dialogues) if s.target_emotion in labels]
    target_len = min(64, seq_len // 4)
    cfg = PromptConfig(max_source_length=seq_len - target_len, max_target_length=target_len)
    rng = random.Random(seed)
    if share < 1:
        keep = sorted(rng.sample(range(len(samples)), round(share * len(samples))))
        samples = [samples[i] for i in keep]
    rows = []
    for k, s in enumerate(samples):
        demo = ""
        if k % 2 and len(samples) > 1:
            other = samples[rng.randrange(len(samples))]
            if other.dialogue_id != s.dialogue_id:
                demo = f"参考回复（情绪：{labels.word(other.target_emotion)}）：{other.response.text}"
        video = video_share > 0 and rng.random() < video_share
        try:
            enc = encode_sample(s, demo, tok, labels, "eerg", video_tokens if video else 0, cfg, has_video=video)
        except ElmdError:
            raise ConfigError(f"lm_pretrain.seq_len={seq_len} is too small for stage eerg's prompt — raise it "
                              "(>= 256) or set lm_pretrain.prompt_share=0") from None
        lab = enc["labels"]
        if video:
            enc["input_ids"] = word_in_video_span(enc, tok.encode(labels.word(s.target_emotion)))
        if not (emotion_loss or video):
            start = next(i for i, v in enumerate(lab) if v != IGNORE)
            n_word = len(tok.encode(labels.word(s.target_emotion)))
            lab = lab[:start] + [IGNORE] * n_word + lab[start + n_word:]
        rows.append(Row(enc["input_ids"], lab))
    return rows


def word_in_video_span(encoded: dict, word: list[int]) -> list[int]:
    """``encoded``'s ids with its video positions filled by ``word``'s tokens, repeated."""
    ids, k = list(encoded["input_ids"]), 0
    for i, is_video in enumerate(encoded["video_mask"]):
        if is_video:
            ids[i] = word[k % len(word)]
            k += 1
    return ids


def pack(rows: list[Row], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows packed whole, in order, into ``[N, seq_len]`` ids and labels (pads: pad_id / -100)."""
    blocks, cur_ids, cur_lab = [], [], []
    for r in rows:
        ids, lab = r.ids[:seq_len], r.labels[:seq_len]
        if len(cur_ids) + len(ids) > seq_len:
            blocks.append((cur_ids, cur_lab))
            cur_ids, cur_lab = [], []
        cur_ids, cur_lab = cur_ids + ids, cur_lab + lab
    if cur_ids:
        blocks.append((cur_ids, cur_lab))
    ids = torch.full((len(blocks), seq_len), pad_id, dtype=torch.long)
    labels = torch.full((len(blocks), seq_len), IGNORE, dtype=torch.long)
    for b, (i, l) in enumerate(blocks):
        ids[b, :len(i)] = torch.tensor(i)
        labels[b, :len(l)] = torch.tensor(l)
    return ids, labels


def epoch_blocks(rows: list[Row], seq_len: int, pad_id: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The blocks of one epoch: rows shuffled (seeded by seed and epoch), then packed."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
    return pack([rows[i] for i in order], seq_len, pad_id)


def batch_stream(rows: list[Row], seq_len: int, batch_size: int, pad_id: int, seed: int):
    """Endless ``(epoch, ids [B, L], labels [B, L])`` batches, epoch after epoch (deterministic)."""
    if not rows:
        raise ElmdError("no training rows — the train files hold no dialogues after the held-out split")
    epoch = 0
    while True:
        ids, labels = epoch_blocks(rows, seq_len, pad_id, seed, epoch)
        for i in range(0, len(ids), batch_size):
            yield epoch, ids[i:i + batch_size], labels[i:i + batch_size]
        epoch += 1


def steps_per_epoch(rows: list[Row], seq_len: int, batch_size: int, pad_id: int, seed: int, epochs: int) -> list[int]:
    """Optimiser steps of each of the first ``epochs`` epochs (packing differs a little by order)."""
    return [-(-len(epoch_blocks(rows, seq_len, pad_id, seed, e)[0]) // batch_size) for e in range(epochs)]
