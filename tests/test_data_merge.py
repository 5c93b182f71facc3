"""The paper's merge rule: same-speaker runs merged, majority emotion, documented tie rule."""

from elmd.data.merge import Sentence, majority_emotion, merge_sentences


def test_majority_plain():
    assert majority_emotion(["sad", "anger", "sad"]) == "sad"


def test_majority_tie_goes_to_label_occurring_last():
    assert majority_emotion(["happy", "sad"]) == "sad"
    assert majority_emotion(["sad", "happy", "happy", "sad"]) == "sad"
    assert majority_emotion(["sad", "happy", "sad", "happy"]) == "happy"


def test_majority_ignores_unlabelled_unless_all_are():
    assert majority_emotion([None, None, "fear"]) == "fear"
    assert majority_emotion([None, None]) is None
    assert majority_emotion([]) is None


def test_merge_runs_of_one_speaker():
    s = [
        Sentence("A", "你好", "neutral", "a0.mp4"),
        Sentence("A", "今天真开心", "happy", "a1.mp4"),
        Sentence("A", "哈哈", "happy", "a2.mp4"),
        Sentence("B", "是吗", "surprise", "b0.mp4"),
        Sentence("A", "嗯", None, "a3.mp4"),
        Sentence("A", "算了", None, "a4.mp4"),
    ]
    turns = merge_sentences(s)
    assert [(t.speaker, t.text, t.emotion, t.video) for t in turns] == [
        ("A", "你好 今天真开心 哈哈", "happy", "a2.mp4"),
        ("B", "是吗", "surprise", "b0.mp4"),
        ("A", "嗯 算了", None, "a4.mp4"),
    ]


def test_merge_keeps_alternating_speakers_apart():
    s = [Sentence("A", "一", "sad"), Sentence("B", "二", "anger"), Sentence("A", "三", "fear")]
    assert [t.text for t in merge_sentences(s)] == ["一", "二", "三"]
    assert merge_sentences([]) == []
