"""StickerConv import (elmd.data.stickerconv) on a small fixture written here, and the real SER30K descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.data.jsonl import read_dialogues
from elmd.data.schema import build_samples
from elmd.data.stickerconv import read_sticker_descriptions, read_stickerconv, stickers_of
from elmd.errors import DataError

ROOT = "/datas/llm_datasets/SER_Dataset/Images/"


def _sticker(path, emotion, anno=None):
    s = {"image": ROOT + path, "description": f"A cartoon {path.split('/')[0]} sticker.", "emotion": emotion,
         "recommendation": "Use it to cheer someone up."}
    if anno:
        s["origin_anno"] = anno
    return s


SESSIONS = [
    {"conversation": [
        {"turn": 0, "user_message": "I finally passed my driving test today!", "user_sticker": None,
         "system_message": "Congratulations, that is wonderful news!", "system_sticker": _sticker("bunny-3/s_1.png", "The sticker shows joy.", "Happiness")},
        {"turn": 1, "user_message": "Thanks, I was so nervous.", "user_sticker": _sticker("cat-2/s_9.jpg", "Fear"),
         "system_message": "Being nervous is normal, you did great.", "system_sticker": None},
        {"turn": 2, "user_message": "Now I want a road trip.", "user_sticker": None,
         "system_message": "A road trip sounds exciting!", "system_sticker": _sticker("bunny-3/s_1.png", "Happiness")},
    ], "user_persona": "You are cheerful.", "user_status": "Just passed a driving test."},
    {"conversation": [
        {"turn": 0, "user_message": "My plant died.", "user_sticker": None,
         "system_message": "I'm sorry, losing something you cared for hurts.", "system_sticker": _sticker("frog/s_4.jpg", "Sadness")},
    ], "user_persona": "", "user_status": "Sad about a plant."},
]


@pytest.fixture()
def conv_file(tmp_path) -> Path:
    p = tmp_path / "train.json"
    p.write_text(json.dumps(SESSIONS), encoding="utf-8")
    return p


def test_sessions_become_dialogues_with_sticker_replies(conv_file):
    rows = read_stickerconv(conv_file)
    assert [r["dialogue_id"] for r in rows] == ["sc00000", "sc00001"]
    d0 = rows[0]["turns"]
    assert [t["speaker"] for t in d0] == ["用户", "助手"] * 3
    assert d0[1]["sticker"] == {"id": "bunny-3/s_1", "image": "bunny-3/s_1.png", "emotion": "happy",
                                "description": "A cartoon bunny-3 sticker.", "recommendation": "Use it to cheer someone up."}
    assert d0[1]["emotion"] == "happy"  # origin_anno wins over the sentence in 'emotion'
    assert d0[2]["sticker"]["emotion"] == "fear" and d0[2]["emotion"] is None  # user turns stay unlabelled
    assert d0[3]["emotion"] is None and "sticker" not in d0[3]
    assert rows[0]["background"] == "Just passed a driving test."


def test_output_reads_as_canonical_jsonl(conv_file, tmp_path):
    out = tmp_path / "dialogues.jsonl"
    r = CliRunner().invoke(main, ["sticker", "import-stickerconv", "--input", str(conv_file), "--out", str(out),
                                  "--stickers-out", str(tmp_path / "stickers.jsonl")])
    assert r.exit_code == 0, r.output
    assert "3/4 replies with a sticker; 3 unique stickers" in r.output
    samples = build_samples(read_dialogues(out))
    assert [s.response.text for s in samples] == ["Congratulations, that is wonderful news!", "A road trip sounds exciting!",
                                                  "I'm sorry, losing something you cared for hurts."]
    stickers = [json.loads(line) for line in (tmp_path / "stickers.jsonl").read_text().splitlines()]
    assert [s["id"] for s in stickers] == ["bunny-3/s_1", "cat-2/s_9", "frog/s_4"]
    r = CliRunner().invoke(main, ["sticker", "import-stickerconv", "--input", str(conv_file), "--out", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_default_emotion_and_jsonl_input(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(s) + "\n" for s in SESSIONS), encoding="utf-8")
    rows = read_stickerconv(p, default_emotion="neutral")
    assert [t["emotion"] for t in rows[0]["turns"] if t["speaker"] == "助手"] == ["happy", "neutral", "happy"]
    assert stickers_of(rows, speakers=("助手",)) == [
        {k: v for k, v in rows[0]["turns"][1]["sticker"].items()}, rows[1]["turns"][1]["sticker"]]


def test_bad_input_names_session_and_fix(tmp_path):
    bad = json.loads(json.dumps(SESSIONS))
    bad[1]["conversation"][0]["system_sticker"]["emotion"] = "Joy"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(DataError, match=r"unknown sticker emotion 'Joy' in session 1 turn 0 system_sticker — use one of Anger"):
        read_stickerconv(p)
    p.write_text(json.dumps([{"turns": []}]), encoding="utf-8")
    with pytest.raises(DataError, match="session 0 has no 'conversation' list"):
        read_stickerconv(p)
    with pytest.raises(DataError, match="not found"):
        read_stickerconv(tmp_path / "none.json")


def test_description_files(tmp_path):
    d = tmp_path / "desc"
    d.mkdir()
    (d / "Fear_example.txt").write_text("emotion: Fear, emotion describe: A trembling cat.\n\nemotion: Fear, emotion describe: Eek.\n")
    got = read_sticker_descriptions(d)
    assert [(x.emotion, x.text, x.line) for x in got] == [("fear", "A trembling cat.", 1), ("fear", "Eek.", 3)]
    (d / "Joy_example.txt").write_text("emotion: Joy, emotion describe: Yay.\n")
    with pytest.raises(DataError, match=r"Joy_example.txt:1: unknown sticker emotion 'Joy'"):
        read_sticker_descriptions(d)


def test_real_ser30k_descriptions(shared_data):
    folder = shared_data / "stickerconv" / "sticker_descriptions"
    if not folder.is_dir():
        pytest.skip("no sticker_descriptions")
    got = read_sticker_descriptions(folder)
    counts = {e: sum(x.emotion == e for x in got) for e in ("happy", "neutral", "sad", "anger", "surprise", "fear", "disgust")}
    assert len(got) == 25732
    assert counts == {"happy": 10504, "neutral": 8905, "sad": 2302, "anger": 1832, "surprise": 1353, "fear": 685, "disgust": 151}
