"""The meta-response target and its strict parser (elmd/heads/avatar/meta.py)."""

from __future__ import annotations

import pytest

from elmd.data.labels import M3ED_LABELS
from elmd.errors import ElmdError
from elmd.heads.avatar.meta import MetaParseError, MetaResponse, MetaStats, Profile, format_meta, parse_meta

WORDS = {"happy": "高兴", "surprise": "惊讶", "sad": "悲伤", "disgust": "厌恶", "anger": "愤怒", "fear": "恐惧", "neutral": "平静"}


def test_words_cover_the_label_set():
    assert set(WORDS) == set(M3ED_LABELS)


def test_format_then_parse_round_trips():
    meta = MetaResponse("sad", "别难过，我陪着你。", scene="家里", act="安慰", profile=Profile("male", "elderly"))
    text = format_meta(meta, WORDS)
    assert text == "情绪：悲伤\n场景：家里\n行为：安慰\n性别：男\n年龄：老年\n语气：低沉\n回复：别难过，我陪着你。"
    stats = MetaStats()
    back = parse_meta(text, WORDS, stats=stats)
    assert back == MetaResponse("sad", "别难过，我陪着你。", "家里", "安慰", Profile("male", "elderly"), "低沉")
    assert (stats.parsed, stats.failed, stats.defaulted) == (1, 0, {})


def test_missing_fields_take_defaults_and_are_counted():
    stats = MetaStats()
    meta = parse_meta("情绪:高兴\n回复: 太好了！", WORDS, default=Profile("male", "middle-aged"), stats=stats)
    assert meta.emotion == "happy" and meta.reply == "太好了！"  # ASCII colon and spaces accepted
    assert meta.profile == Profile("male", "middle-aged") and meta.style == "轻快"
    assert stats.defaulted == {"场景": 1, "行为": 1, "性别": 1, "年龄": 1, "语气": 1}
    parse_meta("回复：好的", WORDS, stats=stats)
    assert stats.parsed == 2 and stats.defaulted["情绪"] == 1


@pytest.mark.parametrize("text, why", [
    ("情绪：高兴", "no reply"),
    ("情绪：高兴\n回复：", "no reply"),
    ("心情：高兴\n回复：好", "unknown key"),
    ("情绪：高兴\n情绪：悲伤\n回复：好", "given twice"),
    ("回复：好\n情绪：高兴", "out of order"),
    ("情绪：开心\n回复：好", "情绪"),
    ("性别：未知\n回复：好", "性别"),
    ("太好了\n回复：好", "not 'key：value'"),
])
def test_malformed_outputs_fail_and_are_counted(text, why):
    stats = MetaStats()
    with pytest.raises(MetaParseError, match=why):
        parse_meta(text, WORDS, stats=stats)
    assert (stats.parsed, stats.failed) == (0, 1) and why in stats.errors[0]


def test_profile_rejects_unknown_values():
    with pytest.raises(ElmdError, match="unknown gender"):
        Profile("unknown", "young")
    with pytest.raises(ElmdError, match="age group"):
        Profile("female", "teen")
