"""Speech of the avatar head: eSpeak NG Mandarin with per-emotion prosody, neural adapters' errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from elmd.errors import ElmdError
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.metrics import prosody
from elmd.heads.avatar.speech import PROSODY, EspeakBackend, read_wav, syllables

TEXT = "今天终于考完试了，我们出去走走吧。"


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """Every emotion spoken by the default profile, plus neutral by a middle-aged man: (result, prosody)."""
    d, backend, out = tmp_path_factory.mktemp("speech"), EspeakBackend(), {}
    for emotion in PROSODY:
        r = backend.synthesize(TEXT, emotion, Profile(), d / f"{emotion}.wav")
        x, sr = read_wav(r.wav)
        out[emotion] = (r, prosody(x, sr, syllables(TEXT)))
    r = backend.synthesize(TEXT, "neutral", Profile("male", "middle-aged"), d / "male.wav")
    out["male"] = (r, prosody(*read_wav(r.wav), syllables(TEXT)))
    return out


def test_mandarin_speech_has_one_timed_word_per_syllable(spoken):
    r, _ = spoken["neutral"]
    assert r.sample_rate == 22050 and r.settings["voice"] == "cmn+f5"
    assert 2.0 < r.duration < 8.0
    words = [w for w, _ in r.words]
    assert "".join(words) == "今天终于考完试了我们出去走走吧"  # every character in a timed word, no punctuation
    assert len(words) >= 12  # cmn times (nearly) every syllable
    starts = [t for _, t in r.words]
    assert starts == sorted(starts) and starts[-1] < r.duration
    x, _ = read_wav(r.wav)
    assert np.abs(x).max() > 0.1


def test_prosody_per_emotion_has_the_intended_order(spoken):
    p = {e: spoken[e][1] for e in PROSODY}
    for hi in ("happy", "anger", "surprise"):
        for lo in ("sad", "neutral"):
            assert p[hi].f0_mean_hz > p[lo].f0_mean_hz, (hi, lo)
            assert p[hi].f0_range_st > p[lo].f0_range_st, (hi, lo)
    assert p["sad"].f0_range_st < p["neutral"].f0_range_st  # flat
    assert p["sad"].rate_syl_s < p["neutral"].rate_syl_s < p["anger"].rate_syl_s
    assert spoken["sad"][0].duration > 1.2 * spoken["neutral"][0].duration


def test_gender_variant_lowers_the_voice(spoken):
    assert spoken["male"][0].settings["voice"] == "cmn+m4"
    assert spoken["male"][1].f0_mean_hz < 0.75 * spoken["neutral"][1].f0_mean_hz


def test_control_characters_are_dropped_before_speaking():
    from elmd.heads.avatar.speech import check_reply_text

    assert check_reply_text(" 你听说\x12\ufffd？好\x17 ") == "你听说？好"


@pytest.mark.parametrize("text", ["", "   ", "！？。", "hello world", "OK 123", "\x12\x17"])
def test_text_without_chinese_is_refused(text, tmp_path):
    with pytest.raises(ElmdError, match="empty|no Chinese character"):
        EspeakBackend().synthesize(text, "happy", Profile(), tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_neural_backends_fail_with_one_line_before_loading(tmp_path):
    from elmd.heads.avatar.neural import ChatTTSBackend, CosyVoiceBackend

    with pytest.raises(ElmdError, match="speech_path is empty"):
        ChatTTSBackend("")
    with pytest.raises(ElmdError, match="folder not found"):
        ChatTTSBackend(tmp_path / "missing")
    (tmp_path / "asset").mkdir()
    (tmp_path / "asset" / "README.md").write_text("weights go here")
    with pytest.raises(ElmdError, match="no checkpoint files"):
        ChatTTSBackend(tmp_path)
    (tmp_path / "asset" / "GPT.pt").write_bytes(b"\0")
    with pytest.raises(ElmdError, match="needs the 'ChatTTS' package"):
        ChatTTSBackend(tmp_path)
    with pytest.raises(ElmdError, match="voice_bank is empty"):
        CosyVoiceBackend(tmp_path, "")


def test_voice_bank_picks_by_gender_then_age(tmp_path):
    from elmd.heads.avatar.neural import VoiceBank

    entries = [{"wav": "f_young.wav", "gender": "female", "age": "young"},
               {"wav": "m_old.wav", "gender": "male", "age": "elderly"},
               {"wav": "m_mid.wav", "gender": "male", "age": "middle-aged"}]
    (tmp_path / "voices.json").write_text(json.dumps(entries))
    for e in entries:
        (tmp_path / e["wav"]).write_bytes(b"RIFF")
    bank = VoiceBank(tmp_path)
    assert bank.pick(Profile("male", "middle-aged"))["wav"].name == "m_mid.wav"
    assert bank.pick(Profile("male", "young"))["wav"].name == "m_old.wav"  # gender first
    assert bank.pick(Profile("female", "elderly"))["wav"].name == "f_young.wav"
    (tmp_path / "m_mid.wav").unlink()
    with pytest.raises(ElmdError, match="reference voice not found"):
        bank.pick(Profile("male", "middle-aged"))
