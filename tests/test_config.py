"""Config system: presets, overrides with type checks, docs, save/load round trip."""

import pytest
import yaml
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.config import (ELMDConfig, available_presets, config_from_dict, config_to_dict, field_docs, format_config,
                         load_config, save_config)
from elmd.data.config import DataConfig
from elmd.errors import ConfigError


def test_presets_exist_and_differ():
    assert {"tiny", "chatglm2-6b"} <= set(available_presets())
    tiny, big = load_config("tiny"), load_config("chatglm2-6b")
    assert (big.train.batch_size, big.prefix.pre_seq_len, big.retrieval.lr, big.retrieval.tau) == (16, 128, 5e-5, 0.5)
    assert big.vision.num_frames == 8 and big.generate.top_p == 0.7 and big.generate.temperature == 0.95
    assert tiny.prefix.pre_seq_len < big.prefix.pre_seq_len


def test_overrides_are_typed():
    cfg = load_config("tiny", ["train.lr=1e-3", "train.epochs=5", "retrieval.ssc=false", "data.labels=[a, b]",
                               "data.label_names={a: 甲}", "data.split_ratios=[8, 1, 1]"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 5 and cfg.retrieval.ssc is False
    assert cfg.data.labels == ["a", "b"] and cfg.data.label_names == {"a": "甲"}
    assert cfg.data.split_ratios == [8.0, 1.0, 1.0] and all(isinstance(x, float) for x in cfg.data.split_ratios)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key 'train.lrr' — did you mean 'train.lr'?"),
    ("trian.lr=1", "unknown config key 'trian' — did you mean 'train'?"),
    ("train.epochs=many", "expected int, got 'many'"),
    ("retrieval.ssc=maybe", "expected true/false"),
    ("data.labels=happy", "expected a list"),
    ("train.lr", "is not key=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        load_config("tiny", [override])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(str(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match="typo.yaml: unknown config key 'train.batchsize' — did you mean 'train.batch_size'"):
        load_config(str(typo))


def test_save_load_round_trip(tmp_path):
    cfg = load_config("tiny", ["train.lr=0.5", "data.labels=[x, y]"])
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(str(path))
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_from_dict(yaml.safe_load(path.read_text())) == cfg


def test_every_field_is_documented():
    def walk(cls):
        docs = field_docs(cls)
        for name, value in vars(cls()).items():
            assert docs.get(name), f"{cls.__name__}.{name} has no docstring"
            if hasattr(value, "__dataclass_fields__"):
                walk(type(value))
    walk(ELMDConfig)
    assert field_docs(DataConfig)["seed"] == "Seed of the split shuffle."


def test_show_prints_docs_as_comments():
    out = CliRunner().invoke(main, ["config", "show", "--set", "train.epochs=9"]).output
    assert "  # Seed of the split shuffle.\n  seed: 42" in out
    assert "  epochs: 9" in out
    assert yaml.safe_load(out)["train"]["epochs"] == 9  # still valid YAML
    assert yaml.safe_load(format_config(ELMDConfig(), compact=True))["train"]["epochs"] == ELMDConfig().train.epochs


# --- issue 11 case 3: ./ and ../ in a config file are relative to the file ---------------------------

def test_file_relative_paths_resolve_against_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "cped" / "data"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        "data:\n  train: ./train.jsonl\n  valid: ../valid.jsonl\n  test: other/test.jsonl\nindex:\n  path: ../index\n",
        encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(str(folder / "config.yaml"), ["data.max_samples=3", "vision.feature_cache=./feats"])
    assert cfg.data.train == str(folder / "train.jsonl")
    assert cfg.data.valid == str(tmp_path / "runs" / "cped" / "valid.jsonl")
    assert cfg.index.path == str(tmp_path / "runs" / "cped" / "index")
    assert cfg.data.test == "other/test.jsonl"  # not ./ or ../: relative to the working directory, as before
    assert cfg.vision.feature_cache == "./feats"  # an override stays relative to the working directory


def test_preset_paths_stay_cwd_relative():
    cfg = load_config("tiny")
    assert (cfg.data.train, cfg.index.path, cfg.train.out) == ("runs/sample/data/train.jsonl", "runs/sample/index", "runs/sample")


# --- issue 11 case 13: the README's claim about --config is true ------------------------------------

CONFIG_COMMANDS = [["data", "prepare"], ["config", "show"], ["retriever", "train"], ["index", "build"],
                   ["features", "extract"], ["train"], ["plan"], ["sticker", "search"], ["avatar", "render"]]
RUN_FOLDER_COMMANDS = [["generate"], ["chat"]]
NO_CONFIG_COMMANDS = [["evaluate"], ["report"], ["convert", "chatglm2"], ["data", "stats"]]


def _options(cmd) -> set[str]:
    """The long options a command's --help lists."""
    import re

    res = CliRunner().invoke(main, cmd + ["--help"])
    assert res.exit_code == 0, res.output
    return set(re.findall(r"^\s+(--[a-z-]+)", res.output, re.M))


def test_readme_says_which_commands_take_config():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "Every command takes `--config" not in readme  # the claim of the issue, no longer made
    assert "`generate` and `chat` take no `--config`: they read the run folder's saved `config.yaml`" in readme
    for cmd in CONFIG_COMMANDS:
        assert {"--config", "--set"} <= _options(cmd), cmd
    for cmd in RUN_FOLDER_COMMANDS:
        opts = _options(cmd)
        assert "--config" not in opts and {"--set", "--checkpoint"} <= opts, cmd
    for cmd in NO_CONFIG_COMMANDS:
        assert "--config" not in _options(cmd), cmd
    assert "--labels" in _options(["evaluate"])
