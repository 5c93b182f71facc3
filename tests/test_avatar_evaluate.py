"""`elmd avatar evaluate`: the fixed render set measured from its MP4s (one text, to stay fast)."""

from __future__ import annotations

import json

import pytest

from elmd.errors import ElmdError
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.evaluate import evaluate_avatars, format_table


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "ev"
    return out, evaluate_avatars(out, AvatarConfig(size=128), texts=("今天终于考完试了，我们出去走走吧。",))


def test_prosody_ordering_lip_sync_and_identity(evaluation):
    out, ev = evaluation
    pe = ev.per_emotion
    assert len(ev.rows) == 14 and set(pe) == {"happy", "surprise", "sad", "disgust", "anger", "fear", "neutral", "all"}
    for hi in ("happy", "anger", "surprise"):
        for lo in ("sad", "neutral"):
            assert pe[hi]["f0_mean_hz"] > pe[lo]["f0_mean_hz"] and pe[hi]["f0_range_st"] > pe[lo]["f0_range_st"]
    assert pe["sad"]["rate_syl_s"] < pe["neutral"]["rate_syl_s"]
    assert all(r.offset_ms == 0.0 for r in ev.rows)  # audio and video aligned to the frame
    assert pe["all"]["lip_corr"] > 0.8 and min(r.lip_corr for r in ev.rows) > 0.6
    assert all(r.ssim_own > r.ssim_other + 0.03 for r in ev.rows)  # each keeps its own face


def test_report_files_and_table(evaluation):
    out, ev = evaluation
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(report["rows"]) == 14 and report["closed_loop"] is None
    table = (out / "report.md").read_text(encoding="utf-8")
    assert table.strip() == format_table(ev) and table.count("\n| ") == 9  # separator + 7 emotions + all
    assert len(list((out / "renders").iterdir())) == 14


def test_refuses_an_existing_folder_and_a_missing_rep_run(evaluation, tmp_path):
    out, _ = evaluation
    with pytest.raises(ElmdError, match="already exists"):
        evaluate_avatars(out)
    with pytest.raises(ElmdError, match="not a finished stage-rep run"):
        evaluate_avatars(tmp_path / "ev", rep_run=tmp_path)
    assert not (tmp_path / "ev").exists()
