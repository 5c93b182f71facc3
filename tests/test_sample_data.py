"""The bundled sample (data/sample/): its dialogues load and are built as designed (the text of a
pivotal utterance leaves the response emotion open), and its face videos are generated correctly,
deterministically, atomically and only when needed."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from elmd.data.faces import face_clip, identity_for
from elmd.data.jsonl import read_dialogues
from elmd.data.labels import M3ED_LABELS, LabelSet
from elmd.data.sample_videos import MANIFEST_NAME, generate_videos, write_mp4
from elmd.data.schema import build_samples
from elmd.errors import DataError, ElmdError

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "dialogues.jsonl"


@pytest.fixture(scope="module")
def dialogues():
    return read_dialogues(SAMPLE)


@pytest.fixture(scope="module")
def raw_lines():
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def _key(s):
    return (s.background, tuple(t.text for t in s.history), s.utterance.text)


def _pivots(samples):
    """Samples whose (B, H, u) text is shared by several dialogues with different target emotions."""
    groups = defaultdict(list)
    for s in samples:
        groups[_key(s)].append(s)
    return [g for g in groups.values() if len({s.target_emotion for s in g}) > 1]


def test_sample_has_the_documented_shape(dialogues, raw_lines):
    assert len(dialogues) == 84
    by_series = Counter(d.series for d in dialogues)
    assert len(by_series) == 12 and set(by_series.values()) == {7}
    turns = [t for d in dialogues for t in d.turns]
    assert {t.emotion for t in turns} == set(M3ED_LABELS)
    for d, raw in zip(dialogues, raw_lines):
        assert 4 <= len(d.turns) <= 6 and d.background
        assert len({t.speaker for t in d.turns}) == 2
        assert all(a.speaker != b.speaker for a, b in zip(d.turns, d.turns[1:]))  # speakers alternate
        for i, t in enumerate(raw["turns"]):
            assert t["video"] == f"videos/{d.dialogue_id}_{i}.mp4"
            assert Path(d.turns[i].video) == SAMPLE.parent / t["video"]  # resolved against the JSONL's folder
    samples = build_samples(dialogues)
    assert len(samples) == len(turns) - len(dialogues)  # every turn but the last makes a sample


def test_texts_are_chinese_and_every_reply_is_distinct(dialogues):
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for d in dialogues:
        assert cjk.search(d.background)
        for t in d.turns:
            assert cjk.search(t.text) and not re.search(r"[A-Za-z]", t.text), t.text
    replies = [s.response.text for g in _pivots(build_samples(dialogues)) for s in g]
    assert len(replies) == 84 == len(set(replies))


def test_every_situation_has_one_pivot_answered_with_all_seven_emotions(dialogues):
    pivots = _pivots(build_samples(dialogues))
    assert len(pivots) == 12
    for group in pivots:
        assert sorted(s.target_emotion for s in group) == sorted(M3ED_LABELS)
        assert len({s.series for s in group}) == 1
        assert len({s.response.text for s in group}) == 7
    # the variant number in the id says nothing about the emotion
    by_number = defaultdict(set)
    for group in pivots:
        for s in group:
            by_number[s.dialogue_id.split("-")[1]].add(s.target_emotion)
    assert all(len(v) >= 4 for v in by_number.values()), by_number


def test_text_alone_cannot_tell_the_pivotal_response_emotion(dialogues):
    samples = build_samples(dialogues)
    groups = defaultdict(Counter)
    for s in samples:
        groups[_key(s)][s.target_emotion] += 1
    # A lookup table from the (B, H, u) text to its most frequent target, fitted on the very samples it
    # is scored on, is an upper bound for any text-only classifier on this data.
    pivot_samples = [s for g in _pivots(samples) for s in g]
    best = sum(groups[_key(s)].most_common(1)[0][0] == s.target_emotion for s in pivot_samples)
    assert best / len(pivot_samples) == pytest.approx(1 / 7)
    # outside the pivots the text does decide the target (opening turns are the same in all variants)
    others = [s for s in samples if len(groups[_key(s)]) == 1]
    assert len(others) == len(samples) - 84


# ----------------------------------------------------------------------------- videos


def _subset(tmp: Path, ids: list[str]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    lines = [line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if json.loads(line)["dialogue_id"] in ids]
    out = tmp / "dialogues.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


S02 = [f"s02-{k}" for k in range(1, 8)]  # 7 dialogues x 4 turns


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = _subset(tmp_path_factory.mktemp("sample"), S02)
    counts = generate_videos(path, progress=False, workers=2)
    return path, counts


def test_generated_videos_read_back_with_decord_and_opencv(generated):
    import cv2
    import decord

    path, counts = generated
    assert (counts["written"], counts["skipped"], counts["total"]) == (28, 0, 28)
    for d in read_dialogues(path):
        for t in d.turns:
            vr = decord.VideoReader(t.video)
            assert len(vr) == 15 and vr[0].shape == (112, 112, 3)
            assert vr.get_avg_fps() == pytest.approx(10)
    cap = cv2.VideoCapture(str(path.parent / "videos" / "s02-1_0.mp4"))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (112, 112, 3)
        frames += 1
    assert frames == 15
    assert not list((path.parent / "videos").glob(".*tmp*"))  # no temporary files left behind


def test_each_clip_shows_the_listener_with_the_response_emotion(generated):
    import decord

    path, _ = generated
    for d in read_dialogues(path):
        for i in (1, 3):  # the pivotal utterance (listener = the one replying) and the last turn
            t = d.turns[i]
            last = i + 1 == len(d.turns)
            listener = d.turns[i - 1 if last else i + 1].speaker
            expected = "neutral" if last else d.turns[i + 1].emotion
            frame = decord.VideoReader(t.video)[14].asnumpy().astype(float)
            errors = {}
            for emotion in M3ED_LABELS:
                ref = face_clip(emotion, identity_for(f"{d.dialogue_id}/{listener}"), seed=f"{d.dialogue_id}/{i}")[14]
                errors[emotion] = ((frame - ref) ** 2).mean()
            best, second = sorted(errors.values())[:2]
            assert min(errors, key=errors.get) == expected, (t.video, errors)
            assert best < 0.9 * second, (t.video, errors)  # clear of codec loss


def test_rerun_skips_and_a_changed_emotion_regenerates_only_its_clip(tmp_path):
    path = _subset(tmp_path, S02[:2])
    assert generate_videos(path, progress=False)["written"] == 8
    assert generate_videos(path, progress=False)[("skipped")] == 8
    manifest = json.loads((tmp_path / "videos" / MANIFEST_NAME).read_text())["clips"]
    assert len(manifest) == 8
    # change the emotion of the response in s02-1 (turn 2): only the clip of turn 1 (listener = its speaker) changes
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    old = rows[0]["turns"][2]["emotion"]
    rows[0]["turns"][2]["emotion"] = "fear" if old != "fear" else "happy"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    before = {p.name: p.read_bytes() for p in (tmp_path / "videos").glob("*.mp4")}
    counts = generate_videos(path, progress=False)
    assert (counts["written"], counts["skipped"]) == (1, 7)
    after = {p.name: p.read_bytes() for p in (tmp_path / "videos").glob("*.mp4")}
    assert [n for n in before if before[n] != after[n]] == [f"{rows[0]['dialogue_id']}_1.mp4"]
    # a damaged file is replaced; another size regenerates everything
    (tmp_path / "videos" / "s02-2_3.mp4").write_bytes(b"not a video")
    assert generate_videos(path, progress=False)["written"] == 1
    assert generate_videos(path, progress=False, size=64)["written"] == 8


def test_generation_is_deterministic(generated, tmp_path):
    src, _ = generated
    a = generate_videos(_subset(tmp_path / "a", S02[:1]), progress=False, workers=1)
    assert a["written"] == 4
    for i in range(4):
        name = f"{S02[0]}_{i}.mp4"
        assert (tmp_path / "a" / "videos" / name).read_bytes() == (src.parent / "videos" / name).read_bytes()


class _FailingFrames:
    """Frames that break after two, like an interrupted run."""

    shape = (15, 112, 112, 3)

    def __iter__(self):
        for _ in range(2):
            yield np.zeros((112, 112, 3), np.uint8)
        raise RuntimeError("interrupted")


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(ElmdError, match="clip.mp4"):
        write_mp4(target, _FailingFrames(), 10)
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_and_inputs_are_reported(tmp_path):
    path = _subset(tmp_path, S02[:1])
    with pytest.raises(ElmdError, match="even"):
        generate_videos(path, size=111, progress=False)
    no_video = tmp_path / "plain.jsonl"
    no_video.write_text(json.dumps({"dialogue_id": "x", "turns": [{"speaker": "A", "text": "你好", "emotion": "happy"}]}))
    with pytest.raises(DataError, match="video"):
        generate_videos(no_video, progress=False)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"dialogue_id": "x", "turns": [
        {"speaker": "A", "text": "你好", "emotion": "neutral", "video": "v/x_0.mp4"},
        {"speaker": "B", "text": "哼", "emotion": "negative-other", "video": "v/x_1.mp4"}]}, ensure_ascii=False))
    labels = LabelSet((*M3ED_LABELS, "negative-other"))
    with pytest.raises(DataError, match="negative-other"):
        generate_videos(other, progress=False, labels=labels)
    assert not (tmp_path / "v").exists()
