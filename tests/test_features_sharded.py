"""`elmd features extract` under torchrun: 2 gloo processes split the videos and fill one cache equal to
the cache of a single process (same entries, same features, same meta.json counts)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from elmd.models.features import FeatureStats, merge_stats

ARGS = ["--set", "vision.num_frames=2", "--set", "vision.image_size=112"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def entries(cache: Path) -> dict[str, torch.Tensor]:
    return {p.name: load_file(str(p))["features"] for p in sorted(cache.glob("??/*.safetensors"))}


@pytest.mark.slow  # ~15-30 s: two torchrun processes start
def test_two_ranks_fill_the_same_cache_as_one_process(video_dir, tmp_path):
    from elmd.cli.main import main

    data = str(video_dir / "dialogues.jsonl")  # 3 distinct videos (v12, v3, other) + a repeat + a turn without
    single = tmp_path / "single"
    res = CliRunner().invoke(main, ["features", "extract", "--data", data, "--out", str(single), *ARGS])
    assert res.exit_code == 0, res.output

    sharded = tmp_path / "sharded"
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "elmd.cli.main", "features", "extract", "--data", data,
           "--out", str(sharded), *ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("videos: 3") == 1  # only rank 0 reports, with the counts of both ranks
    assert "encoded now (misses): 3" in proc.stdout

    one, two = entries(single), entries(sharded)
    assert len(one) == 3 and one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-5, rtol=0), name
    m1, m2 = (json.loads((d / "meta.json").read_text()) for d in (single, sharded))
    assert m2["complete"] and m2 == m1


def test_merge_stats_keeps_the_file_order_of_bad_videos():
    order = ["a", "b", "c", "d"]
    parts = [FeatureStats(1, 1, 1, 0, ["c"]), FeatureStats(0, 2, 1, 0, ["b"])]
    merged = merge_stats(parts, order)
    assert (merged.hits, merged.misses, merged.zeroed, merged.bad_videos) == (1, 3, 2, ["b", "c"])
