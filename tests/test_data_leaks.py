"""Split leaks (elmd.data.leaks): held-out replies copied in train, counted by prepare (issue 12 item 5)."""

import json
from pathlib import Path

from elmd.data.config import DataConfig
from elmd.data.leaks import count_leaks
from elmd.data.prepare import leak_warnings, prepare
from elmd.data.schema import Dialogue, Turn

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "dialogues.jsonl"


def dialogue(did, *texts):
    turns = [Turn(speaker="AB"[i % 2], text=t, emotion="neutral") for i, t in enumerate(texts)]
    return Dialogue(did, did, "", turns)


def test_exact_near_and_short_copies_are_counted_apart():
    train = [dialogue("t1", "今天天气真不错啊我们出去走走", "好吧", "明天再说吧，我今天有点累了")]
    held = [dialogue("h1", "问一句",
                     "今天天气真不错啊我们出去走走",      # verbatim (reply of the first sample)
                     "好吧",                              # short: a common answer, not a leak
                     "明天再说吧，我今天有点累",          # its 12 chars in the 13 of train: F1 = 24/25 = 0.96
                     "完全不同的一句话在这里")]           # no copy
    leak = count_leaks(train, held)
    assert (leak.replies, leak.exact, leak.near, leak.short) == (4, 1, 2, 1)
    assert leak.examples == ["今天天气真不错啊我们出去走走", "明天再说吧，我今天有点累"]
    # F1 0.96 is below a 0.97 threshold: only the verbatim copy is left
    assert count_leaks(train, held, threshold=0.97).near == 1


def test_the_length_window_and_the_set_bound_never_skip_a_true_near_copy():
    import random
    from retrieval.metrics import char_f1
    rng = random.Random(0)
    alphabet = "的一是了我不人在他有这个上们来到时大地为"
    train_texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 14))) for _ in range(300)]
    held_texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 14))) for _ in range(200)]
    train = [dialogue("t", *train_texts)]
    held = [Dialogue(f"h{i}", "h", "", [Turn("A", "问", "neutral"), Turn("B", t, "neutral")]) for i, t in enumerate(held_texts)]
    brute = sum(any(char_f1(h, t) >= 0.8 for t in train_texts) for h in held_texts)
    assert 0 < brute < len(held_texts)  # the case tests something
    assert count_leaks(train, held, threshold=0.8).near == brute


def test_prepare_reports_leaks_and_the_sample_split_by_situation_has_none(tmp_path):
    by_dialogue = prepare("jsonl", SAMPLE, tmp_path / "d", DataConfig())
    assert by_dialogue["leaks"]["test"]["exact"] > 0 and leak_warnings(by_dialogue)
    cfg = DataConfig(split_by="series", split_ratios=[0.66, 0.17, 0.17])
    by_series = prepare("jsonl", SAMPLE, tmp_path / "s", cfg)
    for split in ("valid", "test"):
        assert by_series["leaks"][split]["near"] == 0 and by_series["leaks"][split]["replies"] > 30
    assert leak_warnings(by_series) == []
    assert json.loads((tmp_path / "s" / "stats.json").read_text())["leaks"]["test"]["exact"] == 0


def test_unlabel_copies_leaves_a_leak_free_held_out_set_with_the_context_intact(tmp_path):
    cfg = DataConfig(unlabel_copies=True)
    stats = prepare("jsonl", SAMPLE, tmp_path / "u", cfg)
    plain = prepare("jsonl", SAMPLE, tmp_path / "p", DataConfig())
    for split in ("valid", "test"):
        assert stats["leaks"][split]["near"] == 0
        before, after = plain["splits"][split], stats["splits"][split]
        assert after["samples"] == before["samples"] - stats["unlabelled_copies"][split] > 0
        assert after["utterances"] == before["utterances"]  # the copied turns stay as context
    assert stats["splits"]["train"] == plain["splits"]["train"]
