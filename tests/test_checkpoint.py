"""Atomic, resumable checkpoints: round trip of trainable tensors, optimizer and RNG state."""

import random

import numpy as np
import pytest
import torch

from elmd.errors import ElmdError
from elmd.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)  # frozen: must not be saved
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def train_step(model, opt, sched):
    x = torch.randn(5, 4)
    loss = model(torch.nn.functional.dropout(x, 0.5)).pow(2).mean()
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def trainable(model):
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def test_resume_continues_bit_for_bit(tmp_path):
    # uninterrupted: 6 steps
    model, opt, sched = make()
    for _ in range(6):
        train_step(model, opt, sched)
    expected = {k: v.clone() for k, v in trainable(model).items()}

    # interrupted after 3 steps, restored into fresh objects, 3 more steps
    model, opt, sched = make()
    for _ in range(3):
        train_step(model, opt, sched)
    save_checkpoint(tmp_path, 3, trainable(model), opt, sched, config_yaml="a: 1\n")
    random.random(), np.random.rand(), torch.randn(3)  # disturb every RNG
    model2, opt2, sched2 = make()
    state = load_checkpoint(latest_checkpoint(tmp_path), model2, opt2, sched2)
    assert state["step"] == 3
    for _ in range(3):
        train_step(model2, opt2, sched2)
    for k, v in trainable(model2).items():
        assert torch.equal(v, expected[k]), k


def test_only_trainable_saved_and_old_ones_pruned(tmp_path):
    from safetensors.torch import load_file

    model, opt, sched = make()
    for step in (1, 2, 3):
        path = save_checkpoint(tmp_path, step, trainable(model), opt, sched, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000003"]
    assert latest_checkpoint(tmp_path) == path
    assert set(load_file(str(path / "trainable.safetensors"))) == {"1.weight", "1.bias"}
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))


def test_missing_and_broken(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-00000009\n")
    with pytest.raises(ElmdError, match="incomplete"):
        latest_checkpoint(tmp_path)
