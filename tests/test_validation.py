"""Validated settings (issue 11 case 9) and a failing quickstart step's error shown (case 11).

Each case of the issue reproduced: before, the value was accepted and the command produced garbage
with exit 0 (`train.batch_size=-4` trained 0 steps and saved a model); now loading the config
stops with one line naming the key, the value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.config import ELMDConfig, available_presets, config_from_dict, config_to_dict, load_config, with_overrides
from elmd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

ISSUE_CASES = [  # (override, the message's start, the allowed range it names)
    ("train.batch_size=-4", "train.batch_size=-4 ", ">= 1"),
    ("data.split_ratios=[0.9,0.2,0.1]", "data.split_ratios=[0.9, 0.2, 0.1] ", "summing to 1 (these sum to 1.2)"),
    ("train.device=tpu", "train.device='tpu' ", "auto, cpu, cuda or cuda:N"),
    ("generate.top_p=1.5", "generate.top_p=1.5 ", "in (0, 1]"),
    ("train.lr=-1", "train.lr=-1.0 ", "> 0"),
]

MORE_CASES = [
    ("data.labels=[]", "data.labels=[] ", "non-empty list"),
    ("data.labels=[a,b,a]", "data.labels=['a', 'b', 'a'] ", "repeated or blank: ['a']"),
    ("data.label_names={happy: 平静}", "data.label_names=", "a distinct word per label"),
    ("data.split_ratios=[0.5,0.5]", "data.split_ratios=[0.5, 0.5] ", "three non-negative"),
    ("data.split_ratios=[0,0.5,0.5]", "data.split_ratios=[0.0, 0.5, 0.5] ", "train fraction > 0"),
    ("data.split_by=movie", "data.split_by='movie' ", "one of dialogue, series"),
    ("generate.temperature=0", "generate.temperature=0.0 ", "> 0"),
    ("generate.top_p=0", "generate.top_p=0.0 ", "in (0, 1]"),
    ("generate.device=cuda:x", "generate.device='cuda:x' ", "cuda:N"),
    ("generate.max_new_tokens=0", "generate.max_new_tokens=0 ", ">= 1"),
    ("generate.emotion=forced", "generate.emotion='forced' is not a choice", "one of constrained, free"),
    ("train.grad_accum=0", "train.grad_accum=0 ", ">= 1"),
    ("train.scheduler=cosine", "train.scheduler='cosine' ", "one of linear, constant"),
    ("train.stage=sft", "train.stage='sft' ", "one of rep, eerg"),
    ("train.eerg_lr=0", "train.eerg_lr=0.0 ", "> 0"),
    ("train.warmup_steps=-1", "train.warmup_steps=-1 ", ">= 0"),
    ("prefix.pre_seq_len=0", "prefix.pre_seq_len=0 ", ">= 1"),
    ("prefix.dropout=1", "prefix.dropout=1.0 ", "in [0, 1)"),
    ("prompt.max_source_length=0", "prompt.max_source_length=0 ", ">= 1"),
    ("llm.dtype=fp8", "llm.dtype='fp8' ", "one of float32, bfloat16, float16"),
    ("vision.num_frames=0", "vision.num_frames=0 ", ">= 1"),
    ("vision.on_bad_video=skip", "vision.on_bad_video='skip' ", "one of error, zero"),
    ("vision_pretrain.lr=0", "vision_pretrain.lr=0.0 ", "> 0"),
    ("retrieval.tau=0", "retrieval.tau=0.0 ", "> 0"),
    ("retrieval.builtin_dim=30", "retrieval.builtin_dim=30 ", "a multiple of retrieval.s (4)"),
    ("retrieval.device=gpu", "retrieval.device='gpu' ", "cuda:N"),
    ("index.k=0", "index.k=0 ", ">= 1"),
    ("sticker.top_k=0", "sticker.top_k=0 ", "> 0"),
    ("sticker.mapper_heads=3", "sticker.mapper_hidden=32 ", "a multiple of mapper_heads (3)"),
]


@pytest.mark.parametrize("override, start, allowed", ISSUE_CASES + MORE_CASES)
def test_bad_value_is_one_line_naming_key_value_and_range(override, start, allowed):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", [override])
    msg = str(e.value)
    assert msg.startswith(start) and allowed in msg and "\n" not in msg


@pytest.mark.parametrize("override", ["train.device=cuda:1", "train.device=cuda", "generate.top_p=1",
                                      "data.split_ratios=[8,1,1]", "data.split_ratios=[1,0,0]",
                                      "data.split_ratios=[0.7,0.2,0.1]", "retrieval.epochs=0",
                                      "prefix.dropout=0", "train.max_grad_norm=0", "retrieval.pool=null"])
def test_edge_values_that_are_allowed(override):
    load_config("tiny", [override])


@pytest.mark.parametrize("preset", available_presets())
def test_presets_are_valid(preset):
    cfg = load_config(preset)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_every_section_validates():
    """One design: each section's dataclass has validate(prefix), called by load_config."""
    for f in dataclasses.fields(ELMDConfig):
        section = getattr(ELMDConfig(), f.name)
        assert callable(getattr(section, "validate", None)), f"{f.name} has no validate()"


def test_with_overrides_and_saved_configs_are_validated():
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match=r"^run override 'generate.top_p=2'|^generate.top_p=2.0 "):
        with_overrides(cfg, ["generate.top_p=2"], "run override")
    assert cfg.generate.top_p == 0.7  # the original is untouched
    raw = config_to_dict(cfg)
    raw["train"]["batch_size"] = 0
    with pytest.raises(ConfigError, match=r"^train.batch_size=0 .*>= 1"):
        config_from_dict(raw)


def test_a_config_file_is_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_size: -4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^train.batch_size=-4 is out of range — must be >= 1$"):
        load_config(str(path))


def test_train_with_negative_batch_size_stops_before_writing(tmp_path):
    """Case 9 as written: `elmd train ... --set train.batch_size=-4` trained 0 steps and saved a model."""
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["train", "--stage", "rep", "--out", str(out), "--set", "train.batch_size=-4"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == "error: train.batch_size=-4 is out of range — must be >= 1"
    assert not out.exists()


def test_cli_flag_values_are_validated_like_set(tmp_path):
    res = CliRunner().invoke(main, ["data", "prepare", "--format", "jsonl", "--input", "x.jsonl", "--out",
                                    str(tmp_path / "d"), "--seed", "-3"])
    assert res.exit_code == 2 and "data.seed=-3 is out of range — must be >= 0" in res.output


# --- issue 11 case 11: the quickstart shows a failing step's error -----------------------------------

def _quiet_runner() -> str:
    """The step runner the runbooks source (scripts/steps.sh: LOGS=... through the q() function)."""
    for book in ("quickstart.sh", "cped.sh"):
        text = (REPO / "scripts" / book).read_text(encoding="utf-8")
        assert "source scripts/steps.sh" in text, f"{book} no longer uses the shared step runner"
        assert "2>/dev/null" not in text, f"a {book} step hides its errors again"
    steps = (REPO / "scripts" / "steps.sh").read_text(encoding="utf-8")
    m = re.search(r"^LOGS=.*?^}\n", steps, re.S | re.M)
    assert m, "steps.sh lost its q() step runner"
    return m.group(0)


def test_quickstart_failing_step_shows_its_error(tmp_path):
    script = ("set -euo pipefail\nRUN=" + str(tmp_path) + "\n" + _quiet_runner()
              + "q bash -c 'echo progress-noise >&2; echo result-line'\n"
              + "q bash -c 'echo partial; echo \"Traceback (most recent call last):\" >&2; "
                "echo \"error: data.train missing\" >&2; exit 2' | tail -n 1\n"
              + "echo never-reached\n")
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert res.stdout.splitlines() == ["result-line", "partial"]  # normal output as before; script stopped
    assert "progress-noise" not in res.stderr  # a passing step stays quiet
    assert "step failed (exit 2)" in res.stderr and "error: data.train missing" in res.stderr
    logs = sorted((tmp_path / "logs").glob("bash-*.log"))
    assert len(logs) == 2 and "progress-noise" in logs[0].read_text() + logs[1].read_text()
