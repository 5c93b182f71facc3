"""Importing corpora as a new user meets them (issue 11 cases 3 and 8; issue 15's CPED labels):
encodings, malformed CPED rows, `--out` a file, an empty label set, prepare's portable config.yaml,
and CPED's real per-turn profile / dialogue act / scene."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.config import load_config
from elmd.data.cped import read_cped
from elmd.data.jsonl import read_dialogues
from elmd.data.labels import label_set_from_config
from elmd.data.m3ed import read_m3ed
from elmd.data.schema import Turn
from elmd.errors import DataError, ElmdError

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "dialogues.jsonl"
REAL_CPED = REPO.parent / "shared" / "data" / "cped" / "valid_split.csv"
HEADER = ["TV_ID", "Dialogue_ID", "Utterance_ID", "Speaker", "Gender", "Age", "Scene", "Emotion", "DA", "Utterance"]
ROWS = [["1", "1_000", "1_000_000", "王芳", "female", "young", "home", "happy", "greeting", "你回来啦"],
        ["1", "1_000", "1_000_001", "李雷", "male", "middle-aged", "home", "sadness", "answer", "嗯，今天加班了"],
        ["1", "1_000", "1_000_002", "王芳", "female", "young", "car", "worried", "question", "累不累？"]]
M3ED = {"m1": {"c1": {"Dialog": {
    "u1": {"Text": "你好啊", "Speaker": "A", "EmoAnnotation": {"final_main_emo": "Happy"}},
    "u2": {"Text": "我不太好", "Speaker": "B", "EmoAnnotation": {"final_main_emo": "Sad"}}}}}}


def cped_text(rows=ROWS, header=HEADER) -> str:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    return "\r\n".join(lines) + "\r\n"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def last_line(res) -> str:
    return res.output.strip().splitlines()[-1]


# --- case 8: encodings --------------------------------------------------------------------------

def test_cped_utf8_with_and_without_bom_read_the_same(tmp_path):
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes(cped_text().encode("utf-8"))
    bom.write_bytes(cped_text().encode("utf-8-sig"))
    a, b = read_cped(plain), read_cped(bom)
    assert [d.to_dict() for d in a] == [d.to_dict() for d in b]
    assert [t.text for t in a[0].turns] == ["你回来啦", "嗯，今天加班了", "累不累？"]


def test_gbk_cped_names_file_offset_and_fix_or_decodes_with_encoding(tmp_path):
    """Before: a raw UnicodeDecodeError traceback."""
    gbk = tmp_path / "gbk.csv"
    data = cped_text().encode("gbk")
    gbk.write_bytes(data)
    offset = len(cped_text().split("王芳")[0].encode("gbk"))  # the first non-ASCII byte: 王
    with pytest.raises(DataError) as e:
        read_cped(gbk)
    msg = str(e.value)
    assert msg.startswith(f"{gbk}: is not UTF-8 (byte offset {offset}: {data[offset:offset + 4].hex(' ')}; looks like gbk)")
    assert f"iconv -f gbk -t utf-8 {gbk} > gbk.utf8.csv" in msg and "--encoding gbk" in msg and "\n" not in msg
    utf8 = tmp_path / "utf8.csv"
    utf8.write_bytes(cped_text().encode("utf-8"))
    assert [d.to_dict() for d in read_cped(gbk, encoding="gbk")] == [d.to_dict() for d in read_cped(utf8)]


def test_gbk_m3ed_json_names_offset_or_decodes(tmp_path):
    text = json.dumps(M3ED, ensure_ascii=False)
    path = tmp_path / "annotation.json"
    path.write_bytes(text.encode("gbk"))
    offset = len(text.split("你好啊")[0].encode("gbk"))
    with pytest.raises(DataError, match=rf"annotation.json: is not UTF-8 \(byte offset {offset}: .*iconv -f gbk -t utf-8"):
        read_m3ed(path)
    dialogues = read_m3ed(path, encoding="gbk")
    assert [(t.text, t.emotion) for t in dialogues[0].turns] == [("你好啊", "happy"), ("我不太好", "sad")]
    bom = tmp_path / "bom.json"
    bom.write_bytes(text.encode("utf-8-sig"))
    assert read_m3ed(bom)[0].to_dict() == dialogues[0].to_dict()


def test_wrong_or_unknown_encoding(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(cped_text().encode("utf-8"))
    with pytest.raises(ElmdError, match="^--encoding klingon: unknown encoding — use e.g. gbk"):
        read_cped(path, encoding="klingon")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(cped_text().encode("gbk") + b"\x81\x20")  # a GBK lead byte without its pair
    with pytest.raises(DataError, match=r"bad.csv: is not gbk text \(byte offset \d+"):
        read_cped(bad, encoding="gbk")


def test_prepare_cli_encoding_for_cped_and_jsonl(tmp_path):
    src = tmp_path / "gbk.csv"
    src.write_bytes(cped_text().encode("gbk"))
    res = run("data", "prepare", "--format", "cped", "--input", src, "--out", tmp_path / "a")
    assert res.exit_code == 2 and last_line(res).startswith(f"error: {src}: is not UTF-8 (byte offset")
    assert "Traceback" not in res.output and not (tmp_path / "a" / "train.jsonl").exists()
    res = run("data", "prepare", "--format", "cped", "--input", src, "--out", tmp_path / "a", "--encoding", "gbk",
              "--set", "data.split_ratios=[1,0,0]")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "stats.json").read_text(encoding="utf-8"))["encoding"] == "gbk"
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("gbk"))
    res = run("data", "prepare", "--format", "jsonl", "--input", jsonl, "--out", tmp_path / "b")
    assert res.exit_code == 2 and last_line(res).startswith(f"error: {jsonl}: is not UTF-8 (byte offset ")
    assert "looks like gbk) — convert it with `iconv -f gbk -t utf-8" in last_line(res)
    res = run("data", "prepare", "--format", "jsonl", "--input", jsonl, "--out", tmp_path / "b", "--encoding", "gbk")
    assert res.exit_code == 0, res.output
    n = sum(1 for _ in SAMPLE.open(encoding="utf-8") if _.strip())
    got = sum(len((tmp_path / "b" / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()) for s in ("train", "valid", "test"))
    assert got == n


# --- case 8: other one-line errors ---------------------------------------------------------------

@pytest.mark.parametrize("cut, expected", [(5, "row has 5 of 10 columns"), (11, "row has 11 of 10 columns")])
def test_cped_row_with_wrong_field_count_names_line_and_count(tmp_path, cut, expected):
    """Before: a 5-field row said "unknown CPED emotion ''"."""
    row = (ROWS[1] + ["多余"])[:cut]
    path = tmp_path / "short.csv"
    path.write_text(cped_text([ROWS[0], row, ROWS[2]]), encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_cped(path)
    assert str(e.value).startswith(f"{path}:3: {expected} — check its commas and quotes")


def test_out_naming_an_existing_file_is_one_line(tmp_path):
    """Before: a FileExistsError traceback."""
    out = tmp_path / "taken"
    out.write_text("keep me", encoding="utf-8")
    res = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", out)
    assert res.exit_code == 2 and last_line(res) == f"error: {out}: exists and is a file, not a folder — " \
                                                   "give --out a folder (new or a previous `data prepare` output)"
    assert out.read_text(encoding="utf-8") == "keep me"


def test_os_errors_in_any_command_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    res = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", tmp_path / "file" / "sub")
    assert res.exit_code == 2 and last_line(res).startswith(f"error: {tmp_path / 'file' / 'sub'}: ")
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)


def test_empty_label_set_is_one_line(tmp_path):
    """Before: a ValueError traceback from LabelSet."""
    res = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", tmp_path / "d", "--set", "data.labels=[]")
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert last_line(res) == "error: data.labels=[] is out of range — must be a non-empty list of emotion ids, e.g. [happy,sad,neutral]"


# --- case 3: prepare's config.yaml points at its own splits, portably ----------------------------

def test_prepare_config_points_at_its_splits_from_anywhere(tmp_path, monkeypatch):
    """Before: config.yaml named runs/sample/data/..., so `index build --config D/config.yaml`
    silently indexed the sample."""
    monkeypatch.chdir(tmp_path)
    res = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", "D", "--set", "retrieval.lr=0.5")
    assert res.exit_code == 0, res.output
    saved = (tmp_path / "D" / "config.yaml").read_text(encoding="utf-8")
    assert "train: ./train.jsonl" in saved and "valid: ./valid.jsonl" in saved and "test: ./test.jsonl" in saved
    assert "runs/sample/data" not in saved
    moved = tmp_path / "moved" / "D2"
    shutil.copytree(tmp_path / "D", moved)
    (tmp_path / "else").mkdir()
    monkeypatch.chdir(tmp_path / "else")
    for folder in (tmp_path / "D", moved):
        cfg = load_config(str(folder / "config.yaml"))
        assert (cfg.data.train, cfg.data.valid, cfg.data.test) == tuple(str(folder / f"{s}.jsonl") for s in ("train", "valid", "test"))
        assert cfg.retrieval.lr == 0.5  # the whole config of the command is kept
    stats = json.loads((tmp_path / "D" / "stats.json").read_text(encoding="utf-8"))
    res = run("index", "build", "--config", "../D/config.yaml", "--out", "I", "--encoder", "builtin:char",
              "--set", "retrieval.builtin_dim=32", "--set", "retrieval.builtin_vocab=200", "--set", "retrieval.device=cpu",
              "--set", "index.use_gpu=false")
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "else" / "I" / "meta.json").read_text(encoding="utf-8"))
    assert meta["data"]["path"] == str(tmp_path / "D" / "train.jsonl")
    assert meta["size"] == stats["splits"]["train"]["samples"]


def test_kept_negative_other_is_in_the_saved_label_set(tmp_path):
    src = tmp_path / "c.csv"
    rows = [r[:] for r in ROWS]
    rows[1][7] = "negative-other"
    src.write_text(cped_text(rows), encoding="utf-8")
    res = run("data", "prepare", "--format", "cped", "--input", src, "--out", tmp_path / "d", "--keep-negative-other",
              "--set", "data.split_ratios=[1,0,0]")
    assert res.exit_code == 0, res.output
    cfg = load_config(str(tmp_path / "d" / "config.yaml"))
    assert cfg.data.labels[-1] == "negative-other"
    labels = label_set_from_config(cfg.data.labels, {})
    assert [t.emotion for t in read_dialogues(cfg.data.train, labels)[0].turns] == ["happy", "negative-other", "fear"]


# --- issue 15: CPED's per-turn profile, dialogue act and scene -----------------------------------

def test_cped_profile_act_scene_are_kept_and_round_trip(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(cped_text(), encoding="utf-8")
    turns = read_cped(path)[0].turns
    assert [t.profile for t in turns] == [{"gender": "female", "age": "young"}, {"gender": "male", "age": "middle-aged"},
                                         {"gender": "female", "age": "young"}]
    assert [(t.act, t.scene) for t in turns] == [("greeting", "home"), ("answer", "home"), ("question", "car")]
    res = run("data", "prepare", "--format", "cped", "--input", path, "--out", tmp_path / "d", "--set", "data.split_ratios=[1,0,0]")
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "d" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["turns"][1] == {"speaker": "李雷", "text": "嗯，今天加班了", "emotion": "sad",
                               "profile": {"gender": "male", "age": "middle-aged"}, "act": "answer", "scene": "home"}
    back = read_dialogues(tmp_path / "d" / "train.jsonl")[0].turns
    assert [t.to_dict() for t in back] == [t.to_dict() for t in turns]


def test_merged_turn_takes_last_act_and_scene(tmp_path):
    rows = [ROWS[0], ["1", "1_000", "1_000_001", "王芳", "female", "young", "car", "happy", "question", "走吗"], ROWS[1]]
    path = tmp_path / "c.csv"
    path.write_text(cped_text(rows), encoding="utf-8")
    first = read_cped(path)[0].turns[0]
    assert (first.text, first.act, first.scene, first.profile) == ("你回来啦 走吗", "question", "car", {"gender": "female", "age": "young"})


def test_turn_without_optional_fields_writes_as_before():
    assert Turn("A", "嗯", None).to_dict() == {"speaker": "A", "text": "嗯", "emotion": None}
    assert Turn("A", "嗯", "sad", "v.mp4", act="answer").to_dict() == {"speaker": "A", "text": "嗯", "emotion": "sad",
                                                                        "video": "v.mp4", "act": "answer"}


@pytest.mark.parametrize("profile", [{"gender": "robot", "age": "young"}, {"gender": "male", "height": 1}, "male"])
def test_bad_profile_names_file_line_and_format(tmp_path, profile):
    row = {"dialogue_id": "d", "turns": [{"speaker": "A", "text": "hi", "emotion": None, "profile": profile}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:1: turn 0: bad profile .* — write profile as \{\"gender\": male\|female\|unknown"):
        read_dialogues(path)


@pytest.mark.skipif(not REAL_CPED.exists(), reason="CPED valid split not present in ../shared/data")
def test_real_cped_keeps_gender_age_act_scene():
    dialogues = read_cped(REAL_CPED)
    turns = [t for d in dialogues for t in d.turns]
    assert (len(dialogues), len(turns)) == (934, 3633)
    assert all(t.profile and t.act and t.scene for t in turns)
    assert {t.profile["gender"] for t in turns} == {"male", "female", "unknown"}
    assert {t.profile["age"] for t in turns} == {"young", "middle-aged", "elderly", "unknown"}
    with REAL_CPED.open(encoding="utf-8-sig", newline="") as f:
        acts = {r["DA"] for r in csv.DictReader(f)}
    assert len(acts) == 19 and {t.act for t in turns} <= acts
    first = dialogues[0].turns[0]
    assert (first.speaker, first.profile, first.act, first.scene) == ("于春晓", {"gender": "female", "age": "young"}, "question", "car")
    # a dialogue that changes scene keeps each turn's own
    assert any(len({t.scene for t in d.turns}) > 1 for d in dialogues)


def test_prepare_keeps_other_splits_without_overwrite(tmp_path):
    """No silent loss: other splits in --out are replaced only with --overwrite; the same again is fine."""
    out = tmp_path / "d"
    assert run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", out).exit_code == 0
    before = (out / "train.jsonl").read_bytes()
    again = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", out)
    assert again.exit_code == 0 and (out / "train.jsonl").read_bytes() == before
    res = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", out, "--seed", "7")
    assert res.exit_code == 2 and last_line(res) == (
        f"error: {out}: already holds other splits (train.jsonl, valid.jsonl, test.jsonl differ from this input and "
        "settings) — pass --overwrite to replace them, or choose another --out")
    assert (out / "train.jsonl").read_bytes() == before
    res = run("data", "prepare", "--format", "jsonl", "--input", SAMPLE, "--out", out, "--seed", "7", "--overwrite")
    assert res.exit_code == 0 and (out / "train.jsonl").read_bytes() != before
