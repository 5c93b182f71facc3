"""`elmd data prepare`: CPED / M3ED importers, splits, stats, atomic outputs, CLI errors."""

import csv
import itertools
import json

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.data import prepare as prepare_mod
from elmd.data.config import DataConfig
from elmd.data.cped import CPED_TO_M3ED, read_cped
from elmd.data.jsonl import read_dialogues
from elmd.data.m3ed import read_m3ed
from elmd.data.prepare import prepare
from elmd.data.schema import Dialogue, Turn
from elmd.data.split import split_dialogues
from elmd.errors import DataError

CPED_HEADER = ["TV_ID", "Dialogue_ID", "Utterance_ID", "Speaker", "Gender", "Scene", "Sentiment", "Emotion", "DA", "Utterance"]


def write_cped(path, rows, header=CPED_HEADER):
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(r)
    return path


def cped_row(tv, did, uid, spk, emo, text, scene="home"):
    return [tv, did, uid, spk, "female", scene, "neutral", emo, "statement", text]


def test_cped_merge_and_label_mapping(tmp_path):
    rows = [
        cped_row(1, "1_000", "1_000_000", "甲", "relaxed", "今天放假"),
        cped_row(1, "1_000", "1_000_001", "甲", "worried", "可是作业没写"),
        cped_row(1, "1_000", "1_000_002", "甲", "worried", "怎么办"),
        cped_row(1, "1_000", "1_000_003", "乙", "negative-other", "你活该", scene="car"),
        cped_row(1, "1_000", "1_000_004", "甲", "astonished", "啊？"),
        cped_row(2, "2_000", "2_000_000", "丙", "grateful", "谢谢你", scene="hospital"),
    ]
    path = write_cped(tmp_path / "c.csv", rows)
    d1, d2 = read_cped(path)
    assert [(t.speaker, t.text, t.emotion) for t in d1.turns] == [
        ("甲", "今天放假 可是作业没写 怎么办", "fear"),  # worried -> fear wins 2:1
        ("乙", "你活该", None),  # negative-other dropped: unlabelled context
        ("甲", "啊？", "surprise"),
    ]
    assert (d1.series, d1.background, d2.background, d2.turns[0].emotion) == ("1", "场景：家里、车里", "场景：医院", "happy")
    kept = read_cped(path, keep_negative_other=True)
    assert kept[0].turns[1].emotion == "negative-other"


def test_cped_mapping_covers_the_13_labels():
    assert len(CPED_TO_M3ED) == 13
    assert set(v for v in CPED_TO_M3ED.values() if v) == {"happy", "sad", "fear", "surprise", "anger", "disgust", "neutral"}


def test_cped_bad_input(tmp_path):
    with pytest.raises(DataError, match=r"missing CSV columns \['Emotion'\]"):
        read_cped(write_cped(tmp_path / "a.csv", [], [h for h in CPED_HEADER if h != "Emotion"]))
    bad_label = [cped_row(1, "1_0", "1_0_0", "甲", "happy", "好"), cped_row(1, "1_0", "1_0_1", "乙", "joyful", "好")]
    with pytest.raises(DataError, match=r"b.csv:3: unknown CPED emotion 'joyful'"):
        read_cped(write_cped(tmp_path / "b.csv", bad_label))
    with pytest.raises(DataError, match=r"c.csv:2: empty Utterance"):
        read_cped(write_cped(tmp_path / "c.csv", [cped_row(1, "1_0", "1_0_0", "甲", "happy", " ")]))


def test_real_cped_counts(shared_data):
    path = shared_data / "cped" / "valid_split.csv"
    dialogues = read_cped(path)
    # independent count of speaker runs straight from the CSV
    with path.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    runs = sum(len(list(itertools.groupby(g, key=lambda r: r["Speaker"])))
               for _, g in itertools.groupby(rows, key=lambda r: r["Dialogue_ID"]))
    assert len(rows) == 11137
    assert len(dialogues) == 934 == len({r["Dialogue_ID"] for r in rows})
    assert sum(len(d.turns) for d in dialogues) == runs == 3633
    emotions = {}
    for d in dialogues:
        for t in d.turns:
            emotions[t.emotion] = emotions.get(t.emotion, 0) + 1
    assert emotions == {"neutral": 1101, "happy": 592, "sad": 573, "anger": 506, None: 344,
                        "fear": 282, "surprise": 175, "disgust": 60}


def test_real_cped_prepare(shared_data, tmp_path):
    stats = prepare("cped", shared_data / "cped" / "valid_split.csv", tmp_path, DataConfig())
    s = stats["splits"]
    assert [s[k]["dialogues"] for k in ("train", "valid", "test")] == [747, 93, 94]
    assert sum(s[k]["samples"] for k in s) == 2428
    assert set().union(*(s[k]["target_emotions"] for k in s)) == {"happy", "surprise", "sad", "disgust", "anger", "fear", "neutral"}
    ids = [{d.dialogue_id for d in read_dialogues(tmp_path / f"{k}.jsonl")} for k in ("train", "valid", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


M3ED = {
    "anjia": {
        "anjia_1_1": {
            "SpeakerInfo": {"A": {"Name": "房似锦"}, "B": {"Name": "徐文昌"}},
            "Dialog": {
                "anjia_1_1_A_1": {"StartTime": "00:01:00:01", "EndTime": "00:01:02:00", "Text": "你迟到了", "Speaker": "A",
                                  "EmoAnnotation": {"final_main_emo": "Anger"}},
                "anjia_1_1_A_2": {"Text": "第三次了", "Speaker": "A", "EmoAnnotation": {"final_main_emo": "Disgust"}},
                "anjia_1_1_B_1": {"Text": "对不起", "Speaker": "B",
                                  "EmoAnnotation": {"EmoAnnotator1": "Sad", "EmoAnnotator2": "Sad", "EmoAnnotator3": "Fear"}},
                "anjia_1_1_A_3": {"Text": "下不为例", "Speaker": "A"},
            },
        }
    },
    "huanlesong": {"huanlesong_1_1": {"Dialog": {"u1": {"Text": "你好", "Speaker": "A", "EmoAnnotation": {"final_main_emo": "Happy"}},
                                                 "u2": {"Text": "好久不见", "Speaker": "B", "EmoAnnotation": {"final_main_emo": "Surprise"}}}}},
}


def test_m3ed_annotation_shape(tmp_path):
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(M3ED, ensure_ascii=False), encoding="utf-8")
    d1, d2 = read_m3ed(path, video_template="{series}/{dialogue_id}/{utterance_id}.mp4")
    assert (d1.dialogue_id, d1.series) == ("anjia_1_1", "anjia")
    assert [(t.speaker, t.text, t.emotion, t.video) for t in d1.turns] == [
        ("房似锦", "你迟到了 第三次了", "disgust", "anjia/anjia_1_1/anjia_1_1_A_2.mp4"),  # 1:1 tie -> last
        ("徐文昌", "对不起", "sad", "anjia/anjia_1_1/anjia_1_1_B_1.mp4"),  # no final label: annotators' majority
        ("房似锦", "下不为例", None, "anjia/anjia_1_1/anjia_1_1_A_3.mp4"),  # no annotation at all
    ]
    assert [(t.speaker, t.emotion) for t in d2.turns] == [("A", "happy"), ("B", "surprise")]  # no SpeakerInfo


def test_m3ed_unknown_label(tmp_path):
    bad = {"m": {"c": {"Dialog": {"u": {"Text": "好", "Speaker": "A", "EmoAnnotation": {"final_main_emo": "Joy"}}}}}}
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"a.json: m/c/u: unknown M3ED emotion 'Joy'"):
        read_m3ed(tmp_path / "a.json")


def make_dialogues(n, series_of=lambda i: f"s{i % 7}"):
    return [Dialogue(f"d{i}", series_of(i), "", [Turn("A", "一", "sad"), Turn("B", "二", "happy")]) for i in range(n)]


def test_split_dialogue_ratios_and_seed():
    ds = make_dialogues(100)
    parts = split_dialogues(ds, [0.8, 0.1, 0.1], "dialogue", seed=1)
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [80, 10, 10]
    assert {d.dialogue_id for p in parts.values() for d in p} == {d.dialogue_id for d in ds}
    again = split_dialogues(ds, [0.8, 0.1, 0.1], "dialogue", seed=1)
    other = split_dialogues(ds, [0.8, 0.1, 0.1], "dialogue", seed=2)
    assert [d.dialogue_id for d in again["test"]] == [d.dialogue_id for d in parts["test"]]
    assert [d.dialogue_id for d in other["test"]] != [d.dialogue_id for d in parts["test"]]


def test_split_by_series_never_shares_a_series():
    ds = make_dialogues(70)
    parts = split_dialogues(ds, [0.8, 0.1, 0.1], "series", seed=0)
    series = [{d.series for d in parts[k]} for k in ("train", "valid", "test")]
    assert all(series) and not (series[0] & series[1] or series[0] & series[2] or series[1] & series[2])
    assert sum(len(p) for p in parts.values()) == 70


def test_prepare_is_atomic(tmp_path, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in make_dialogues(20)), encoding="utf-8")
    out = tmp_path / "out"
    prepare("jsonl", src, out, DataConfig())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"train.jsonl", "valid.jsonl", "test.jsonl", "stats.json", "config.yaml"}

    calls = []

    def failing(path, rows):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, rows)

    real = prepare_mod.atomic_write_jsonl
    monkeypatch.setattr(prepare_mod, "atomic_write_jsonl", failing)
    with pytest.raises(OSError):
        prepare("jsonl", src, out, DataConfig(seed=7), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old outputs intact, no staging left


def test_prepare_rewrites_video_paths_relative_to_output(tmp_path):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    row = {"dialogue_id": "d", "series": "s", "background": "",
           "turns": [{"speaker": "A", "text": "一", "emotion": "sad", "video": "videos/d_0.mp4"},
                     {"speaker": "B", "text": "二", "emotion": "happy"}]}
    (src_dir / "x.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "deep" / "out"
    prepare("jsonl", src_dir / "x.jsonl", out, DataConfig(split_ratios=[1, 0, 0]))
    (d,) = read_dialogues(out / "train.jsonl")
    assert (out / "train.jsonl").read_text().count("../../src/videos/d_0.mp4") == 1
    assert d.turns[0].video == str(out / "../../src/videos/d_0.mp4")


def test_cli_prepare_and_errors(tmp_path):
    rows = [cped_row(1, f"1_{i:03d}", f"1_{i:03d}_{j}", "甲乙"[j % 2], ["happy", "anger", "fear"][(i + j) % 3], f"第{j}句")
            for i in range(30) for j in range(4)]
    src = write_cped(tmp_path / "c.csv", rows)
    runner = CliRunner()
    res = runner.invoke(main, ["data", "prepare", "--format", "cped", "--input", str(src), "--out", str(tmp_path / "o"), "--seed", "3"])
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["seed"] == 3 and stats["splits"]["train"]["dialogues"] == 24
    assert "train " in res.output and "samples" in res.output
    res = runner.invoke(main, ["data", "stats", str(tmp_path / "o")])
    assert res.exit_code == 0 and "24" in res.output
    res = runner.invoke(main, ["data", "prepare", "--format", "cped", "--input", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'missing.csv'}: file not found — ")
    assert not (tmp_path / "p" / "train.jsonl").exists()
