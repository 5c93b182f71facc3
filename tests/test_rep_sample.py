"""Stage rep on the bundled sample (issue #5's done-when): the listener's face carries the reply's
emotion, so REP with video must beat the label prior, and REP w/o V cannot.

Slow by design (about 3 minutes on 2 cores): draws the sample's 413 clips into a temporary
folder, pre-trains the tiny visual encoder on synthetic faces, caches the features and trains
REP twice, all with the tiny preset as `scripts/quickstart.sh` does (without the demonstration
index, which REP does not need to show the video signal).
"""

from __future__ import annotations

import shutil

import pytest

from elmd.config import load_config

pytestmark = pytest.mark.slow  # about 3 minutes: draws the sample, pre-trains the encoder, trains REP twice


@pytest.fixture(scope="module")
def sample_cfg(tmp_path_factory, repo_root):
    from elmd.data.prepare import prepare
    from elmd.data.sample_videos import generate_videos
    from elmd.models.features import extract_features
    from elmd.training.vision_pretrain import pretrain_tiny_encoder

    d = tmp_path_factory.mktemp("sample_rep")
    shutil.copy(repo_root / "data" / "sample" / "dialogues.jsonl", d / "dialogues.jsonl")
    generate_videos(d / "dialogues.jsonl", progress=False)
    cfg = load_config("tiny", [f"data.train={d}/data/train.jsonl", f"data.valid={d}/data/valid.jsonl",
                               f"data.test={d}/data/test.jsonl", "prompt.use_demonstration=false",
                               f"vision.path={d}/vision", f"vision.feature_cache={d}/features",
                               f"train.out={d}/runs", "train.device=cpu"])
    prepare("jsonl", d / "dialogues.jsonl", d / "data", cfg.data)
    pretrain_tiny_encoder(cfg.vision_pretrain, cfg.vision, d / "vision", progress=False)
    extract_features(d / "dialogues.jsonl", d / "features", cfg.vision, show_progress=False)
    return cfg


def test_rep_with_video_beats_the_label_prior_and_wo_v_does_not(sample_cfg, tmp_path):
    from elmd.config import with_overrides
    from elmd.training.rep import train_rep

    with_video = train_rep(sample_cfg, out=tmp_path / "rep", show_progress=False)
    wo_v = train_rep(with_overrides(sample_cfg, ["vision.use_video=false"]), out=tmp_path / "rep_wo_v", show_progress=False)
    prior = with_video["label_prior_accuracy"]
    acc, acc_wo_v = with_video["final"]["valid_accuracy"], wo_v["final"]["valid_accuracy"]
    assert acc >= prior + 0.1, (acc, prior)  # at least 3 of the 28 valid samples beyond the prior
    assert acc_wo_v <= prior < acc
    predicted = with_video["final"]["valid_predicted"]
    assert sum(v > 0 for v in predicted.values()) >= 3  # it tells emotions apart, not one answer
