"""Checkpoints and --resume: a run killed mid-epoch keeps its last checkpoint, and resuming ends with
exactly the weights (and epoch metrics) of an uninterrupted run, prefix dropout included."""

from __future__ import annotations

import pytest
import torch

import elmd.training.loop as loop
from elmd.training import eerg
from elmd.training.checkpoint import latest_checkpoint
from elmd.training.metrics_log import read_metrics

RUN = ["train.batch_size=4", "train.eerg_epochs=2", "train.init_from_rep=false", "prefix.dropout=0.1",
       "train.save_every=2", "train.eerg_lr=0.01"]


class Killed(Exception):
    pass


def run(cfg, out, resume=False):
    s = eerg.setup(cfg, out, show_progress=False)
    meta = eerg.fit(s, resume=resume, show_progress=False)
    return {k: v.clone() for k, v in s.model.trainable_state_dict().items()}, meta


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(train_cfg, tmp_path, monkeypatch):
    cfg = train_cfg(*RUN)
    full, full_meta = run(cfg, tmp_path / "full")  # 12 samples / 4 = 3 steps per epoch, 6 in all

    real_step, calls = loop.train_step, []

    def dying_step(*args, **kwargs):
        if len(calls) == 4:  # killed during step 5 (epoch 2), after the checkpoint of step 4
            raise Killed
        calls.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", dying_step)
    with pytest.raises(Killed):
        run(cfg, tmp_path / "killed")
    assert latest_checkpoint(tmp_path / "killed").name == "step-00000004"  # lost only the step in progress
    monkeypatch.setattr(loop, "train_step", real_step)

    resumed, meta = run(cfg, tmp_path / "killed", resume=True)
    assert resumed.keys() == full.keys()
    assert all(torch.equal(resumed[k], full[k]) for k in full)
    assert [e["valid_loss"] for e in meta["epochs"]] == [e["valid_loss"] for e in full_meta["epochs"]]
    rows = [r for r in read_metrics(tmp_path / "killed" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # the log continues without repeats
    want = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "loss" in r]
    assert [r["loss"] for r in rows] == want


def test_a_fresh_run_does_not_pick_up_old_checkpoints(train_cfg, tmp_path):
    cfg = train_cfg(*RUN, "train.eerg_epochs=1")
    first, _ = run(cfg, tmp_path / "out")
    again, _ = run(cfg, tmp_path / "out")  # without --resume: starts over, same seed, same result
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert latest_checkpoint(tmp_path / "out").name == "step-00000003"
