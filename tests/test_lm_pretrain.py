"""`elmd lm pretrain` (issue 12 item 1): a tiny GLM pre-trained on a few hundred tokens in seconds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from elmd.errors import ConfigError, DataError, ElmdError
from elmd.training.lm_config import LMPretrainConfig
from elmd.training.lm_pretrain import pretrain_lm
from fixtures_llm import DIALOGUES

CFG = LMPretrainConfig(layers=2, hidden=32, heads=4, kv_heads=2, intermediate=64, vocab_size=0, seq_len=128,
                       batch_size=2, lr=1e-2, warmup=2, epochs=6, heldout_share=0.2, prompt_share=0.5, eval_every=3,
                       checkpoint_every=3, seed=0)


def _write(path, dialogues):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in dialogues), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six dialogues (the LLM fixtures' three, twice under other ids) as data/train.jsonl."""
    twice = DIALOGUES + [replace(d, dialogue_id=d.dialogue_id + "b") for d in DIALOGUES]
    return _write(tmp_path_factory.mktemp("lm") / "data" / "train.jsonl", twice)


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    return pretrain_lm([corpus], tmp_path_factory.mktemp("lm_out") / "lm", CFG, progress=False)


def test_loss_falls_and_meta_records_the_run(pretrained, corpus):
    meta = pretrained.meta
    assert not pretrained.reused
    hist = meta["history"]
    assert hist[-1]["step"] == meta["steps"] and len(hist) >= 3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 1.0
    assert hist[-1]["heldout_loss"] < hist[0]["heldout_loss"]
    assert meta["inputs"][0]["sha256"] and meta["inputs"][0]["path"] == str(corpus)
    assert meta["settings"]["hidden"] == 32 and meta["tokens_seen"] > 0 and meta["heldout_ppl"] > 1
    assert meta["rows"]["train_dialogues"] + meta["rows"]["heldout_dialogues"] == 6
    assert {p.name for p in pretrained.out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.model", "meta.json"}
    assert not pretrained.out.with_name(".lm.lm-work").exists()  # the checkpoints are gone once the output is whole


def test_output_loads_through_the_tiny_preset(pretrained):
    from elmd.config import load_config
    from elmd.models.presets import build_elmd_model, load_llm, load_tokenizer

    out = pretrained.out
    cfg = load_config("tiny", [f"llm.path={out}", f"llm.tokenizer={out}/tokenizer.model"])
    tok = load_tokenizer(cfg)
    llm = load_llm(cfg, tok)
    saved = load_file(str(out / "model.safetensors"))
    own = llm.state_dict()
    assert llm.config.num_hidden_layers == 2 and llm.config.num_key_value_heads == 2 and llm.config.hidden_size == 32
    assert all(torch.equal(own[k], v) for k, v in saved.items())
    model = build_elmd_model(cfg, tok, q_dim=16)
    assert model.llm.config.vocab_size == tok.vocab_size
    # llm.path alone: the tokenizer beside the weights is used
    assert load_tokenizer(load_config("tiny", [f"llm.path={out}"])).vocab_size == tok.vocab_size


def test_missing_pretrained_folder_is_one_line(tmp_path):
    from elmd.config import load_config
    from elmd.models.presets import check_preset

    with pytest.raises(ElmdError, match="holds no pre-trained tiny LM"):
        check_preset(load_config("tiny", [f"llm.path={tmp_path}"]))


def test_same_seed_gives_identical_weights_and_the_cache_is_reused(pretrained, corpus, tmp_path):
    again = pretrain_lm([corpus], tmp_path / "lm", CFG, progress=False)
    a, b = load_file(str(pretrained.out / "model.safetensors")), load_file(str(again.out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stamp = (again.out / "model.safetensors").stat().st_mtime_ns
    reused = pretrain_lm([corpus], tmp_path / "lm", CFG, progress=False)
    assert reused.reused and reused.meta["key"] == again.meta["key"]
    assert (again.out / "model.safetensors").stat().st_mtime_ns == stamp
    other = replace(CFG, epochs=1)
    with pytest.raises(ElmdError, match="other inputs or settings — pass --overwrite"):
        pretrain_lm([corpus], tmp_path / "lm", other, progress=False)
    replaced = pretrain_lm([corpus], tmp_path / "lm", other, overwrite=True, progress=False)
    assert not replaced.reused and replaced.meta["settings"]["epochs"] == 1


def test_interrupted_run_resumes_to_the_same_weights(pretrained, corpus, tmp_path):
    def stop(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_lm([corpus], tmp_path / "lm", CFG, progress=False, on_step=stop)
    assert not (tmp_path / "lm").exists()
    assert (tmp_path / ".lm.lm-work" / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    done = pretrain_lm([corpus], tmp_path / "lm", CFG, progress=False)
    assert done.meta["resumed_at_step"] == 3
    a, b = load_file(str(pretrained.out / "model.safetensors")), load_file(str(done.out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert done.meta["history"] == pretrained.meta["history"]


def test_valid_and_test_files_are_refused(corpus, tmp_path):
    valid = _write(tmp_path / "valid.jsonl", DIALOGUES)
    with pytest.raises(DataError, match="looks like a valid split"):
        pretrain_lm([corpus, valid], tmp_path / "lm", CFG, progress=False)
    _write(tmp_path / "d" / "test.jsonl", DIALOGUES)
    renamed = _write(tmp_path / "d" / "mine.jsonl", DIALOGUES)
    with pytest.raises(DataError, match="same content as test.jsonl"):
        pretrain_lm([renamed], tmp_path / "lm", CFG, progress=False)


def test_cli_refuses_a_test_split_in_one_line(tmp_path):
    from elmd.cli.main import main

    test = _write(tmp_path / "test.jsonl", DIALOGUES)
    res = CliRunner().invoke(main, ["lm", "pretrain", "--data", str(test), "--out", str(tmp_path / "lm")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "looks like a test split" in lines[0] and "Traceback" not in res.output


def test_rows_follow_chatglm2_conventions(corpus):
    from elmd.models.presets import tiny_tokenizer
    from elmd.training import lm_data

    dialogues = lm_data.read_corpus([corpus])
    tok = tiny_tokenizer(lm_data.tokenizer_texts(dialogues), corpus.parent / "tok.model")
    row = lm_data.dialogue_row(dialogues[0], tok)
    assert row.ids[:2] == tok.prefix_ids() and row.ids[-1] == tok.eos_id == 2 and tok.pad_id == 0
    assert tok.decode(row.ids) == "背景：两个老同学在咖啡馆偶遇。\n" + "\n".join(f"{t.speaker}：{t.text}" for t in dialogues[0].turns)
    assert tok.decode(row.ids).split("\n")[1] == "王芳：哎，这不是李雷吗？好久不见！"
    prompt = lm_data.prompt_rows(dialogues[:1], tok, 256, seed=0)[0]
    text = tok.decode(prompt.ids)
    assert text.startswith("[Round 1]\n\n问：请根据背景") and "当前话语：王芳：哎，这不是李雷吗？好久不见！\n\n答：高兴\n" in text
    learnt = tok.decode([i for i, lab in zip(prompt.ids, prompt.labels) if lab != -100])
    assert learnt == "\n王芳！真巧，你也在这儿喝咖啡？"  # reply (+ eos), not the emotion word
    with_word = lm_data.prompt_rows(dialogues[:1], tok, 256, seed=0, emotion_loss=True)[0]
    assert tok.decode([i for i, lab in zip(with_word.ids, with_word.labels) if lab != -100]).startswith("高兴\n")
    ids, labels = lm_data.pack([row, prompt, row], 256, tok.pad_id)
    assert ids.shape[1] == 256 and (labels[ids == tok.pad_id] == -100).all()
    assert int((labels != -100).sum()) == sum(sum(v != -100 for v in r.labels) for r in (row, prompt, row))


def test_video_rows_hold_the_emotion_word_in_the_video_span_and_learn_it(corpus):
    from elmd.models.presets import tiny_tokenizer
    from elmd.training import lm_data

    dialogues = lm_data.read_corpus([corpus])
    tok = tiny_tokenizer(lm_data.tokenizer_texts(dialogues), corpus.parent / "tok.model")
    plain = lm_data.prompt_rows(dialogues[:1], tok, 256, seed=0)
    video = lm_data.prompt_rows(dialogues[:1], tok, 256, seed=0, video_share=1.0, video_tokens=5)
    assert len(video) == len(plain)
    row, word = video[0], tok.encode("高兴")
    text = tok.decode(row.ids)
    # the span is where the prompt puts video tokens; it holds the word (repeated to fill 5 positions)
    span = "".join(tok.decode([w]) for w in (word * 5)[:5])
    assert span in text and text.index(span) < text.index("答：")
    learnt = tok.decode([i for i, lab in zip(row.ids, row.labels) if lab != -100])
    assert learnt.startswith("高兴\n")  # the emotion word is learnt in a video row, whatever emotion_loss says
    assert all(tok.mask_id not in r.ids for r in video)
    # a share: seeded, some rows with a span and some without
    many = lm_data.read_corpus([corpus])
    half = lm_data.prompt_rows(many, tok, 256, seed=0, video_share=0.5, video_tokens=5)
    lengths = {len(a.ids) - len(b.ids) for a, b in zip(half, lm_data.prompt_rows(many, tok, 256, seed=0))}
    assert 0 in lengths and len(lengths) > 1


@pytest.mark.parametrize("override, key", [("lm_pretrain.kv_heads=3", "lm_pretrain.kv_heads"),
                                           ("lm_pretrain.heads=5", "lm_pretrain.heads"),
                                           ("lm_pretrain.heldout_share=0", "lm_pretrain.heldout_share")])
def test_bad_settings_are_one_line(override, key):
    from elmd.config import load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("tiny", [override])


def test_cli_trains_then_says_it_reuses(corpus, tmp_path):
    from elmd.cli.main import main

    sets = [f"--set=lm_pretrain.{k}={v}" for k, v in vars(CFG).items()]
    args = ["lm", "pretrain", "--data", str(corpus), "--out", str(tmp_path / "lm"), *sets]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "tiny LM trained in" in first.output and f"llm.path={tmp_path / 'lm'}" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "tiny LM reused (same inputs and settings)" in second.output
