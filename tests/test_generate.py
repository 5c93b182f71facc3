"""`elmd generate` and the baselines on a tiny trained run: one valid row per sample, greedy
determinism across batch sizes, seeded sampling, resume (skip + repair), unparsable outputs counted,
retrieval-only = top hit's r', text-only / single-frame prompts, and `elmd evaluate` on the file."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from elmd.data.jsonl import read_samples
from elmd.errors import ElmdError
from elmd.evaluation.baselines import baseline_pipeline, frame_index, single_frame
from elmd.evaluation.evaluate import evaluate_file
from elmd.evaluation.generate import generate_file, read_existing
from elmd.inference import load, request_of
from elmd.models.elmd_model import ELMDOutput
from elmd.resources import labels_of, open_index
from elmd.runs import run_config

FIELDS = {"sample_id", "emotion_pred", "response", "reference", "reference_emotion", "demonstration"}


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def loaded(gen_run):
    return load(gen_run.eerg)


def gen(gen_run, out, *overrides, baseline="none", checkpoint=None, loaded=None):
    checkpoint = checkpoint or gen_run.eerg
    return generate_file(checkpoint, gen_run.test, out, baseline, overrides, progress=False, pipeline=loaded,
                         log=lambda m: None)


@pytest.fixture(scope="module")
def greedy_file(gen_run, loaded, tmp_path_factory):
    out = tmp_path_factory.mktemp("greedy") / "preds.jsonl"
    return out, gen(gen_run, out, "generate.greedy=true", "generate.batch_size=2", loaded=loaded)


def test_one_valid_row_per_sample_with_the_retrieved_demonstration(gen_run, greedy_file, tmp_path):
    out, meta = greedy_file
    cfg = run_config(gen_run.eerg)
    samples = read_samples(gen_run.test, labels_of(cfg))
    got = rows(out)
    assert [r["sample_id"] for r in got] == [s.sample_id for s in samples]
    assert all(FIELDS <= r.keys() for r in got)
    assert [(r["reference"], r["reference_emotion"]) for r in got] == [(s.response.text, s.target_emotion) for s in samples]
    hits = open_index(cfg).search([s.utterance.text for s in samples], 1, [s.dialogue_id for s in samples])
    demos = [f"参考回复（情绪：{labels_of(cfg).word(h[0].response_emotion)}）：{h[0].response}" for h in hits]
    assert [r["demonstration"] for r in got] == demos
    assert meta["rows"] == meta["generated"] == len(samples) and meta["skipped_existing"] == 0
    assert meta["unparsable_emotions"] == sum(r["emotion_pred"] is None for r in got)
    assert 0 < meta["new_tokens"] <= len(samples) * 12  # generate.max_new_tokens=12
    report = evaluate_file(out, tmp_path / "report.json", progress=False)
    assert report["counts"]["samples"] == len(samples)
    assert report["counts"]["unparsable_emotions"] == meta["unparsable_emotions"]


def test_greedy_is_deterministic_and_independent_of_batch_size(gen_run, greedy_file, loaded, tmp_path):
    out, _ = greedy_file
    gen(gen_run, tmp_path / "b1.jsonl", "generate.greedy=true", "generate.batch_size=1", loaded=loaded)
    gen(gen_run, tmp_path / "b5.jsonl", "generate.greedy=true", "generate.batch_size=5", loaded=loaded)
    reference = rows(out)
    assert rows(tmp_path / "b1.jsonl") == reference == rows(tmp_path / "b5.jsonl")


def test_sampling_is_seeded(gen_run, loaded, tmp_path):
    texts = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        gen(gen_run, tmp_path / f"{name}.jsonl", f"generate.seed={seed}", "generate.batch_size=5", loaded=loaded)
        texts[name] = [r["generated"] for r in rows(tmp_path / f"{name}.jsonl")]
    assert texts["a"] == texts["b"] and texts["a"] != texts["c"]


def test_resume_skips_existing_rows_and_repairs_a_truncated_last_line(gen_run, greedy_file, loaded, tmp_path):
    out, _ = greedy_file
    full = out.read_text(encoding="utf-8").splitlines(keepends=True)
    resumed = tmp_path / "preds.jsonl"
    resumed.write_text("".join(full[:2]) + full[2][: len(full[2]) // 2], encoding="utf-8")  # crash mid-line
    (tmp_path / "preds.meta.json").write_bytes(out.with_name("preds.meta.json").read_bytes())
    meta = gen(gen_run, resumed, "generate.greedy=true", "generate.batch_size=2", loaded=loaded)
    assert meta["repaired_last_line"] and meta["skipped_existing"] == 2 and meta["generated"] == len(full) - 2
    assert sorted(rows(resumed), key=lambda r: r["sample_id"]) == sorted(rows(out), key=lambda r: r["sample_id"])
    again = gen(gen_run, resumed, "generate.greedy=true", loaded=loaded)  # complete: nothing to do
    assert again["generated"] == 0 and again["rows"] == len(full) and not again["repaired_last_line"]


def test_read_existing_truncates_only_the_broken_tail(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"sample_id": "a"}\n{"sample_id": "b"}\n{"sample_id": "c", "resp', encoding="utf-8")
    assert read_existing(path) == ({"a", "b"}, True)
    assert path.read_text(encoding="utf-8") == '{"sample_id": "a"}\n{"sample_id": "b"}\n'
    path.write_text('{"sample_id": "a"}\nnot json\n{"sample_id": "b"}\n', encoding="utf-8")
    with pytest.raises(ElmdError, match=r"p.jsonl:2"):
        read_existing(path)


def test_resume_refuses_rows_made_with_other_settings(gen_run, greedy_file, loaded, tmp_path):
    out, _ = greedy_file
    copy = tmp_path / "preds.jsonl"
    copy.write_bytes(out.read_bytes())
    (tmp_path / "preds.meta.json").write_bytes(out.with_name("preds.meta.json").read_bytes())
    with pytest.raises(ElmdError, match="other generate"):
        gen(gen_run, copy, "generate.greedy=false", loaded=loaded)


class ScriptedModel(torch.nn.Module):
    """Answers each prompt with a fixed text through the decoding interface (start / step):
    row 0 a parsable eerg answer, the others unparsable."""

    def __init__(self, tokenizer):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        good = tokenizer.encode("高兴\n太好了") + [tokenizer.eos_id]
        bad = tokenizer.encode("唉，真让人难过。") + [tokenizer.eos_id]
        self.answers, self.vocab = [good, bad], tokenizer.vocab_size

    def _logits(self, rows: int, k: int) -> ELMDOutput:
        logits = torch.zeros(rows, 1, self.vocab)
        for b in range(rows):
            answer = self.answers[0 if b == 0 else 1]
            logits[b, 0, answer[min(k, len(answer) - 1)]] = 1e4  # certain under sampling too
        return ELMDOutput(logits)

    def start(self, input_ids, **_):
        state = {"k": 0, "rows": input_ids.shape[0]}
        return self._logits(state["rows"], 0), state

    def step(self, state, tokens):
        state["k"] += 1
        return self._logits(state["rows"], state["k"])


def test_an_unparsable_output_is_counted_not_dropped(gen_run, loaded, tmp_path):
    """generate.emotion=free (the paper's setting): the model writes the word and it is parsed."""
    from dataclasses import replace

    out = tmp_path / "p.jsonl"
    scripted = replace(loaded, model=ScriptedModel(loaded.tokenizer))
    meta = gen(gen_run, out, "generate.batch_size=5", "generate.emotion=free", loaded=scripted)
    got = rows(out)
    assert len(got) == 5 and meta["unparsable_emotions"] == 4
    assert (got[0]["emotion_pred"], got[0]["response"]) == ("happy", "太好了")
    assert all(r["emotion_pred"] is None and r["response"] == "唉，真让人难过。" for r in got[1:])
    report = evaluate_file(out, tmp_path / "r.json", progress=False)
    assert report["counts"]["unparsable_emotions"] == 4 and report["counts"]["samples"] == 5


def test_retrieval_only_returns_the_top_hits_response(gen_run, tmp_path):
    out = tmp_path / "r.jsonl"
    meta = gen(gen_run, out, baseline="retrieval-only")
    cfg = run_config(gen_run.eerg)
    samples = read_samples(gen_run.test, labels_of(cfg))
    hits = open_index(cfg).search([s.utterance.text for s in samples], 1, [s.dialogue_id for s in samples])
    got = rows(out)
    assert [r["response"] for r in got] == [h[0].response for h in hits]
    assert [r["emotion_pred"] for r in got] == [h[0].response_emotion for h in hits]
    assert all(h[0].dialogue_id != s.dialogue_id for h, s in zip(hits, samples))
    assert meta["new_tokens"] == 0 and meta["rows"] == 5


def test_text_only_prompts_have_no_video_positions_and_no_demonstration(gen_run, loaded, tmp_path):
    pipe = baseline_pipeline(gen_run.text_only, "text-only")
    cfg, tokenizer = pipe.cfg, pipe.tokenizer
    samples = read_samples(gen_run.test, labels_of(cfg))
    assert all(s.video for s in samples)  # the samples do have videos: the full run's prompts show them
    assert any(load(gen_run.eerg).encode(request_of(samples[0]), "")["video_mask"])
    requests = [request_of(s) for s in samples]
    for s, r, d in zip(samples, requests, pipe.demonstrations(requests)):
        enc = pipe.encode(r, d)
        text = tokenizer.decode(enc["input_ids"])
        assert not any(enc["video_mask"]) and "\n视频：" not in text and "参考回复" not in text and s.utterance.text in text
    meta = gen(gen_run, tmp_path / "t.jsonl", "generate.greedy=true", baseline="text-only", checkpoint=gen_run.text_only)
    assert meta["warnings"] == [] and all(r["demonstration"] == "" for r in rows(tmp_path / "t.jsonl"))
    # the full checkpoint as a text-only model is flagged (it was trained with video and demonstrations)
    assert len(gen(gen_run, tmp_path / "w.jsonl", baseline="text-only", loaded=loaded)["warnings"]) == 2


def test_single_frame_replicates_one_seeded_frame():
    feats = torch.arange(3 * 4 * 2 * 5, dtype=torch.float32).reshape(3, 4, 2, 5)  # [B, m, Q, q]
    ids = ["d1#0", "d2#3", "d3#1"]
    out = single_frame(feats, ids, seed=7)
    for b, sid in enumerate(ids):
        j = frame_index(7, sid, 4)
        assert 0 <= j < 4 and all(torch.equal(out[b, k], feats[b, j]) for k in range(4))
    assert torch.equal(single_frame(feats, ids, seed=7), out)
    assert len({frame_index(s, "d1#0", 4) for s in range(20)}) > 1  # the seed matters


def test_cli_generates_a_baseline_and_evaluate_scores_it(gen_run, tmp_path):
    from elmd.cli.evaluate_cmd import cli as evaluate_cli
    from elmd.cli.generate_cmd import cli

    out = tmp_path / "sf.jsonl"
    res = CliRunner().invoke(cli, ["--checkpoint", gen_run.eerg, "--out", str(out), "--baseline", "single-frame",
                                   "--greedy", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(rows(out)) == 5 and all(r["demonstration"] == "" for r in rows(out))
    assert "single-frame: 5 generated" in res.output and "warning: the checkpoint was trained with demonstrations" in res.output
    res = CliRunner().invoke(evaluate_cli, ["--pred", str(out), "--out", str(tmp_path / "ev"), "--no-progress"])
    assert res.exit_code == 0 and (tmp_path / "ev" / "report.json").exists()
    res = CliRunner().invoke(cli, ["--checkpoint", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 2 and "not a finished training output" in res.output


def test_rows_without_their_meta_are_refused_and_overwrite_replaces_them(gen_run, greedy_file, loaded, tmp_path):
    out, _ = greedy_file
    orphan = tmp_path / "orphan.jsonl"
    orphan.write_bytes(out.read_bytes())  # rows of some model, no .meta.json: appending would mix models
    with pytest.raises(ElmdError, match="no orphan.meta.json.*--overwrite"):
        gen(gen_run, orphan, "generate.greedy=true", loaded=loaded)
    assert orphan.read_bytes() == out.read_bytes()
    meta = generate_file(gen_run.eerg, gen_run.test, orphan, "none", ["generate.greedy=true", "generate.batch_size=2"],
                         progress=False, pipeline=loaded, log=lambda m: None, overwrite=True)
    assert meta["complete"] and meta["generated"] == 5 and rows(orphan) == rows(out)
    assert not (tmp_path / ".orphan.jsonl.staging").exists()
    assert json.loads((tmp_path / "orphan.meta.json").read_text())["heads"] == []
