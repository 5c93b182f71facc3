"""Canonical JSONL reading, the sample definition and one-line errors for bad input."""

import json

import pytest

from elmd.data.jsonl import read_dialogues, read_samples
from elmd.data.labels import LabelSet
from elmd.data.schema import build_samples
from elmd.errors import DataError


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


def dialogue(did="d1", turns=None, **kw):
    turns = turns if turns is not None else [
        {"speaker": "A", "text": "你来了", "emotion": "neutral", "video": "v/d1_0.mp4"},
        {"speaker": "B", "text": "嗯，刚到", "emotion": "happy", "video": "v/d1_1.mp4"},
        {"speaker": "B", "text": "路上堵车", "emotion": "anger"},
        {"speaker": "A", "text": "辛苦了", "emotion": "sad"},
    ]
    return {"dialogue_id": did, "series": "s", "background": "家里", "turns": turns, **kw}


def test_samples_follow_the_definition(tmp_path):
    path = write(tmp_path / "a.jsonl", [dialogue()])
    (d,) = read_dialogues(path)
    assert d.turns[0].video == str(tmp_path / "v/d1_0.mp4")  # relative to the file's folder
    samples = build_samples([d])
    # turn 0 -> 1 (B answers A); 1 -> 2 same speaker: no sample; 2 -> 3 (A answers B)
    assert [s.sample_id for s in samples] == ["d1#0", "d1#2"]
    s0, s2 = samples
    assert (s0.utterance.text, s0.response.text, s0.target_emotion, s0.history) == ("你来了", "嗯，刚到", "happy", [])
    assert s0.video == str(tmp_path / "v/d1_0.mp4")
    assert [t.text for t in s2.history] == ["你来了", "嗯，刚到"]
    assert (s2.utterance.text, s2.target_emotion, s2.video, s2.background) == ("路上堵车", "sad", None, "家里")


def test_unlabelled_response_is_context_not_target(tmp_path):
    turns = [{"speaker": "A", "text": "一", "emotion": "sad"}, {"speaker": "B", "text": "二", "emotion": None},
             {"speaker": "A", "text": "三", "emotion": "fear"}]
    samples = read_samples(write(tmp_path / "a.jsonl", [dialogue(turns=turns)]))
    assert [s.sample_id for s in samples] == ["d1#1"]
    assert [t.text for t in samples[0].history] == ["一"]


def test_max_samples(tmp_path):
    path = write(tmp_path / "a.jsonl", [dialogue("d1"), dialogue("d2")])
    assert len(read_samples(path)) == 4
    assert len(read_samples(path, max_samples=3)) == 3


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", "a.jsonl:2: malformed JSON"),
        ({"turns": []}, "a.jsonl:2: missing field 'dialogue_id'"),
        (dialogue("d2", turns=[]), "a.jsonl:2: 'turns' must be a non-empty list"),
        (dialogue("d2", turns=[{"speaker": "A", "text": "  ", "emotion": "sad"}]), "a.jsonl:2: turn 0 has empty text"),
        (dialogue("d2", turns=[{"speaker": "A", "text": "好", "emotion": "joy"}]), "a.jsonl:2: unknown emotion label 'joy' in turn 0"),
        (dialogue("d1"), "a.jsonl:2: dialogue_id 'd1' repeats line 1"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path / "a.jsonl", [dialogue("d1"), row])
    with pytest.raises(DataError) as e:
        read_dialogues(path)
    assert message in str(e.value)
    assert " — " in str(e.value)  # every error carries its fix
    assert "\n" not in str(e.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        read_dialogues(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="contains no dialogues"):
        read_dialogues(tmp_path / "e.jsonl")


def test_declared_label_set(tmp_path):
    turns = [{"speaker": "A", "text": "一", "emotion": "calm"}, {"speaker": "B", "text": "二", "emotion": "excited"}]
    path = write(tmp_path / "a.jsonl", [dialogue(turns=turns)])
    labels = LabelSet(("calm", "excited"), {"calm": "平静", "excited": "激动"})
    (s,) = read_samples(path, labels)
    assert s.target_emotion == "excited" and labels.word("excited") == "激动"
    assert labels.from_word("激动") == "excited" and labels.from_word("高兴") is None
