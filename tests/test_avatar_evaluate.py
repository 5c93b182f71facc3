"""`elmd avatar evaluate`: the fixed render set measured from its MP4s (one text, to stay fast)."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    assert all(abs(r.audio_delay_ms) < 0.1 for r in ev.rows)  # muxing did not shift the speech
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


def test_closed_loop_scores_videos_as_the_rep_run_validates(train_cfg, train_folder, tmp_path):
    """The closed-loop check scores a video exactly as the rep run's validation scores it: fed the
    run's own valid clips (warm = happy, cold = sad), it must reproduce the run's valid accuracy
    and predictions (the tiny fixture run need not tell them apart; agreement is what is tested)."""
    from elmd.heads.avatar.evaluate import closed_loop_emotion
    from elmd.training.run import train

    meta = train(train_cfg(), "rep", show_progress=False)
    videos = [(train_folder / "warm.mp4", "happy"), (train_folder / "cold.mp4", "sad")] * 2
    cl = closed_loop_emotion(meta["out"], videos, tmp_path / "cl")
    valid = meta["final"]
    assert cl["accuracy"] == pytest.approx(valid["valid_accuracy"])  # valid = 2 warm/happy + 2 cold/sad samples
    assert cl["predicted"].count("happy") == valid["valid_predicted"]["happy"]
    assert cl["chance"] == pytest.approx(1 / 7) and set(cl["per_emotion"]) == {"happy", "sad"}


REP_RUN = Path(os.environ.get("ELMD_REP_RUN", Path(__file__).resolve().parent.parent / "runs" / "sample" / "rep"))


@pytest.mark.slow
@pytest.mark.skipif(not (REP_RUN / "trainable.safetensors").is_file(), reason="needs a rep run (bash scripts/quickstart.sh)")
def test_closed_loop_emotion_of_the_sample_rep_run_beats_chance(tmp_path):
    """The quickstart's REP (trained on the sample's face videos) recognises the avatars' emotions."""
    from elmd.heads.avatar.evaluate import EVAL_PROFILES, closed_loop_emotion
    from elmd.heads.avatar.render import EMOTIONS, render_avatar

    videos = [(render_avatar("今天终于考完试了。", e, tmp_path / f"{e}{i}", AvatarConfig(size=128), p).video, e)
              for i, p in enumerate(EVAL_PROFILES) for e in EMOTIONS]
    cl = closed_loop_emotion(REP_RUN, videos, tmp_path / "cl")
    assert cl["accuracy"] > 2 * cl["chance"], cl
