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


def test_an_existing_result_is_never_lost_and_overwrite_swaps_in_a_complete_one(train_cfg, tmp_path, monkeypatch):
    from elmd.errors import ElmdError
    from elmd.training.outputs import staging_of
    from elmd.training.run import train

    cfg = train_cfg(*RUN, "train.eerg_epochs=1")
    out = tmp_path / "out"
    first = train(cfg, "eerg", out, show_progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ElmdError, match="already holds a training result.*--resume.*--overwrite"):
        train(cfg, "eerg", out, show_progress=False)  # forgetting --resume deletes nothing
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert latest_checkpoint(out).name == "step-00000003"

    def dying_step(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(loop, "train_step", dying_step)
    with pytest.raises(Killed):  # an --overwrite run that dies leaves the old result as it was
        train(cfg, "eerg", out, show_progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    monkeypatch.undo()
    again = train(cfg, "eerg", out, show_progress=False, overwrite=True)
    assert again["out"] == str(out) and not staging_of(out).exists()
    assert again["final"] == first["final"]  # same seed, same settings: the same result, swapped in
    assert (out / "trainable.safetensors").read_bytes() == before["trainable.safetensors"]
    assert len([r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]) == 3  # a fresh log, not appended


def test_resume_with_other_result_deciding_settings_is_refused_naming_them(train_cfg, tmp_path):
    from elmd.errors import ElmdError
    from elmd.training.run import train

    out = tmp_path / "out"
    train(train_cfg(*RUN, "train.eerg_epochs=1"), "eerg", out, show_progress=False)
    with pytest.raises(ElmdError, match=r"other settings: train\.eerg_lr \(0\.01 -> 0\.1\)"):
        train(train_cfg(*RUN, "train.eerg_epochs=1", "train.eerg_lr=0.1"), "eerg", out, resume=True, show_progress=False)
    meta = train(train_cfg(*RUN, "train.eerg_epochs=1", "train.log_every=2"), "eerg", out, resume=True,
                 show_progress=False)  # logging is not a result-deciding setting
    assert meta["final"]["valid_loss"] > 0
