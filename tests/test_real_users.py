"""Issue "real data, real users", cases 1 and 12 as a new user hits them: the tiny preset trains on
the real CPED split (its tokenizer sized to the data), a video stage on a corpus without videos
says so once, and commands print one config line instead of the whole config."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from elmd.cli.main import main


@pytest.fixture(scope="module")
def cped_splits(shared_data, tmp_path_factory):
    """The real CPED valid split, prepared into canonical train/valid/test (text only)."""
    out = tmp_path_factory.mktemp("cped") / "data"
    res = CliRunner().invoke(main, ["data", "prepare", "--format", "cped", "--input",
                                    str(shared_data / "cped" / "valid_split.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_tiny_tokenizer_is_sized_to_real_cped(cped_splits):
    from elmd.config import load_config
    from elmd.models.presets import TINY_VOCAB, _dialogue_texts, load_tokenizer

    cfg = load_config("tiny", [f"data.train={cped_splits / 'train.jsonl'}"])
    tok = load_tokenizer(cfg)  # was: "Vocabulary size is smaller than required_chars. 2000 vs 2475"
    chars = {c for t in _dialogue_texts(cped_splits / "train.jsonl") for c in t if not c.isspace()}
    assert tok.n_words > TINY_VOCAB and tok.n_words >= len(chars) + 256
    assert "-v" in tok.path.name  # its size is part of the cache name
    text = "我真的不知道该怎么办了"
    assert tok.decode(tok.encode(text)) == text and not any(tok.sp.is_byte(i) for i in tok.encode(text))
    fixed = load_tokenizer(load_config("tiny", [f"data.train={cped_splits / 'train.jsonl'}", "llm.tiny_vocab_size=3500"]))
    assert fixed.n_words == 3500


def test_rep_on_cped_trains_with_video_on_and_warns_once_that_there_is_none(cped_splits, tmp_path):
    args = ["train", "--stage", "rep", "--out", str(tmp_path / "rep"),
            "--set", f"data.train={cped_splits / 'train.jsonl'}", "--set", f"data.valid={cped_splits / 'valid.jsonl'}",
            "--set", "prompt.use_demonstration=false", "--set", "vision.feature_cache=", "--set", "data.max_samples=24",
            "--set", "train.epochs=1", "--set", "train.device=cpu", "--set", "vision.num_frames=2",
            "--set", "vision.num_query_tokens=4", "--set", "vision.image_size=64"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("has a video") == 1 and "--ablation wo_v" in res.output
    config_lines = [line for line in res.output.splitlines() if line.startswith("# config:")]
    assert len(config_lines) == 1 and "train:" not in res.output  # one line, not the whole config
    assert (tmp_path / "rep" / "config.yaml").read_text(encoding="utf-8").count("\n") > 50  # saved whole
    verbose = CliRunner().invoke(main, ["-v"] + args[:4] + [str(tmp_path / "rep2")] + args[5:])
    assert verbose.exit_code == 0 and "train: {" in verbose.output  # -v prints it
