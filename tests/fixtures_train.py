"""Session fixtures of the training area: a tiny dialogue set whose utterance videos tell the reply's
emotion (two solid-colour clips), its tokenizer, and the config that trains on it in seconds."""

from __future__ import annotations

import json

import pytest
import torch

UTTERANCES = ["你听说了吗？", "我跟你说件事。", "你猜怎么着？", "有个消息。"]


def train_dialogues(n: int, offset: int = 0) -> list[dict]:
    """n two-turn dialogues; the utterance's video is 'warm.mp4' when the reply is happy and
    'cold.mp4' when it is sad (the text alone does not tell)."""
    out = []
    for k in range(offset, offset + n):
        happy = k % 2 == 0
        out.append({"dialogue_id": f"t{k}", "series": f"s{k % 3}", "background": "两个朋友在聊天。" if k % 3 else "",
                    "turns": [
                        {"speaker": "甲", "text": UTTERANCES[k % len(UTTERANCES)], "emotion": "neutral",
                         "video": "warm.mp4" if happy else "cold.mp4"},
                        {"speaker": "乙", "text": "太好了，真为你高兴！" if happy else "唉，真让人难过。",
                         "emotion": "happy" if happy else "sad"},
                    ]})
    return out


def _write(path, dialogues) -> None:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dialogues), encoding="utf-8")


@pytest.fixture(scope="session")
def train_folder(tmp_path_factory):
    """train.jsonl (12 dialogues), valid.jsonl (4), the two clips, and the cached tiny tokenizer."""
    from fixtures_video import write_video

    d = tmp_path_factory.mktemp("train_data")
    write_video(d / "warm.mp4", 4, size=32, blue=20)
    write_video(d / "cold.mp4", 4, size=32, blue=230)
    _write(d / "train.jsonl", train_dialogues(12))
    _write(d / "valid.jsonl", train_dialogues(4, offset=100))
    from elmd.models.presets import load_tokenizer

    load_tokenizer(train_overrides_cfg(d, d / "runs"))  # trains and caches tiny_tokenizer.model once
    return d


def train_overrides(folder, out) -> list[str]:
    """Overrides of the tiny preset for the fixture data: no index (w/o ERM), small video setup."""
    return [f"data.train={folder / 'train.jsonl'}", f"data.valid={folder / 'valid.jsonl'}",
            "prompt.use_demonstration=false", "vision.feature_cache=", "vision.num_frames=2", "vision.image_size=64",
            "vision.num_query_tokens=4", "train.batch_size=4", "train.epochs=2", "train.eerg_epochs=2",
            "train.lr=0.01", "train.eerg_lr=0.01", "prefix.pre_seq_len=4", "prefix.dropout=0.0",
            f"train.out={out}", "train.device=cpu"]


def train_overrides_cfg(folder, out, extra=()):
    from elmd.config import load_config

    return load_config("tiny", train_overrides(folder, out) + list(extra))


@pytest.fixture
def train_cfg(train_folder, tmp_path):
    """A fresh config (own output folder) for the fixture data; call with extra overrides."""
    return lambda *extra: train_overrides_cfg(train_folder, tmp_path / "runs", extra)


class ToyOut:
    """What a model returns to the loop: only ``logits``."""

    def __init__(self, logits):
        self.logits = logits


class Toy(torch.nn.Module):
    """logits = x * w: a one-parameter model for the loop's step logic (batch key ``x``)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return ToyOut(x * self.w)
