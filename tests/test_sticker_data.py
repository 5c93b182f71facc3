"""Stickers on dialogue turns (elmd.heads.sticker.data): attaching them to a share of replies, reading gold stickers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.data.jsonl import read_samples
from elmd.errors import ElmdError
from elmd.heads.sticker.data import attach_stickers, response_stickers
from elmd.heads.sticker.library import Sticker

STICKERS = [Sticker("h1", "h1.png", "happy"), Sticker("h2", "h2.png", "happy"), Sticker("s1", "s1.png", "sad")]
ROWS = [{"dialogue_id": "d1", "series": "", "background": "", "turns": [
    {"speaker": "A", "text": "a", "emotion": "happy"},  # first turn: never a reply
    {"speaker": "B", "text": "b", "emotion": "happy"},
    {"speaker": "B", "text": "c", "emotion": "sad"},  # same speaker again: not a reply
    {"speaker": "A", "text": "d", "emotion": "sad"},
    {"speaker": "B", "text": "e", "emotion": None},  # unlabelled: not a reply
    {"speaker": "A", "text": "f", "emotion": "fear"},  # no fear sticker in the library
]}]


def test_share_one_gives_every_labelled_reply_a_sticker_of_its_emotion():
    rows, counts = attach_stickers(ROWS, STICKERS, share=1.0)
    assert counts == {"replies": 3, "with_sticker": 2, "no_sticker_of_emotion": 1}
    stick = [t.get("sticker") for t in rows[0]["turns"]]
    assert [s is not None for s in stick] == [False, True, False, True, False, False]
    assert stick[1]["id"] in ("h1", "h2") and stick[3]["id"] == "s1"
    assert "sticker" not in ROWS[0]["turns"][1]  # the input is not changed


def test_share_zero_and_determinism():
    assert attach_stickers(ROWS, STICKERS, share=0.0)[1]["with_sticker"] == 0
    assert attach_stickers(ROWS, STICKERS, 0.5, seed=3) == attach_stickers(ROWS, STICKERS, 0.5, seed=3)
    with pytest.raises(ElmdError, match="share"):
        attach_stickers(ROWS, STICKERS, share=1.5)


def test_bundled_sample_gets_about_sixty_percent(repo_root, tmp_path):
    assert CliRunner().invoke(main, ["sticker", "draw-library", "--out", str(tmp_path / "set"), "--size", 32]).exit_code == 0
    out = tmp_path / "with_stickers.jsonl"
    r = CliRunner().invoke(main, ["sticker", "attach", "--data", str(repo_root / "data/sample/dialogues.jsonl"),
                                  "--stickers", str(tmp_path / "set/stickers.jsonl"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "196/329 replies got a sticker" in r.output
    gold = response_stickers(out)
    samples = read_samples(out)
    with_gold = [s for s in samples if s.sample_id in gold]
    assert len(with_gold) == 196 and all(gold[s.sample_id]["emotion"] == s.target_emotion for s in with_gold)


def test_response_stickers_keys(tmp_path):
    rows, _ = attach_stickers(ROWS, STICKERS, share=1.0)
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sorted(response_stickers(p)) == ["d1#0", "d1#2"]  # samples whose responses are turns 1 and 3
