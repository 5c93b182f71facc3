"""Distributed training: 2 CPU processes with gloo (torch.distributed.run) end with identical
trainable weights, equal to one process on the same global batch; gradient accumulation too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from elmd.config import save_config
from elmd.training import eerg

STEPS = ["train.batch_size=4", "train.eerg_epochs=1", "train.init_from_rep=false", "train.eerg_lr=0.01"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process(cfg, out) -> dict[str, torch.Tensor]:
    s = eerg.setup(cfg, out, show_progress=False)
    eerg.fit(s, show_progress=False)
    return {k: v.clone() for k, v in s.model.trainable_state_dict().items()}


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max().item())


def test_two_gloo_ranks_equal_one_process_on_the_same_global_batch(train_cfg, tmp_path):
    cfg = train_cfg(*STEPS)
    config = save_config(cfg, tmp_path / "config.yaml")
    out = tmp_path / "ddp"
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(Path(__file__).parent / "train_worker.py"), str(config), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert r0.keys() == {"projector.proj.weight", "projector.proj.bias", "prefix.embedding.weight"}
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # the ranks never drift apart
    assert load_file(str(out / "trainable.safetensors")).keys() == r0.keys()  # rank 0 wrote the output

    single = single_process(cfg, tmp_path / "single")
    fresh = eerg.setup(cfg, tmp_path / "fresh", show_progress=False).model.trainable_state_dict()
    assert any(not torch.allclose(single[k], fresh[k]) for k in single)  # training moved the weights
    assert_close(r0, single, atol=2e-5)


def test_gradient_accumulation_equals_the_full_batch(train_cfg, tmp_path):
    full = single_process(train_cfg(*STEPS), tmp_path / "full")
    accum = single_process(train_cfg(*STEPS, "train.grad_accum=2"), tmp_path / "accum")
    assert_close(accum, full, atol=2e-5)
