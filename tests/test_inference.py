"""elmd.inference on the tiny trained run: load from another working directory (and a moved copy),
filled replies, batch == one at a time, threads == sequential with per-request generators (the
process RNG untouched), hidden states equal to a training forward, per-request settings, and the
sampler's top-p against transformers' warper."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from elmd.data.jsonl import read_samples
from elmd.inference import Request, load, request_of
from elmd.inference.decoding import DecodeSettings, warp


@pytest.fixture(scope="module")
def pipe(gen_run):
    return load(gen_run.eerg)


@pytest.fixture(scope="module")
def requests(gen_run, pipe):
    samples = read_samples(gen_run.test, pipe.labels)
    return [request_of(s, seed=100 + k) for k, s in enumerate(samples)]


def test_a_moved_run_loads_from_another_directory_and_answers(gen_run, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(gen_run.folder, moved)
    saved = (moved / "runs" / "eerg" / "config.yaml").read_text(encoding="utf-8")
    assert str(gen_run.folder) not in saved  # every path is stored relative to the run folder
    monkeypatch.chdir(tmp_path)
    p = load("elsewhere/copy/runs/eerg", overrides=["generate.greedy=true"])
    assert p.cfg.index.path == str(moved / "index") and p.cfg.data.test == str(moved / "test.jsonl")
    assert p.spec.name == "eerg" and p.model.prefix is not None
    reply = p.respond("你听说了吗？", video=str(moved / "warm.mp4"), background="两个朋友在聊天。")
    assert reply.demonstration.startswith("参考回复（情绪：")  # retrieved from the moved index
    assert 0 < reply.new_tokens <= p.cfg.generate.max_new_tokens and reply.raw_text
    assert (reply.emotion is None and reply.emotion_word == "") or reply.emotion_word == p.labels.word(reply.emotion)
    assert reply.response in reply.raw_text and reply.hidden is None and reply.extras == {}


def test_batch_equals_one_at_a_time_and_threads_equal_sequential(pipe, requests):
    rng = torch.get_rng_state()
    one = [pipe.respond_batch([r])[0].raw_text for r in requests]
    batch = [r.raw_text for r in pipe.respond_batch(requests)]
    assert batch == one
    with ThreadPoolExecutor(max_workers=3) as ex:  # three requests in flight at once, each with its own seed
        threaded = list(ex.map(lambda r: pipe.respond_batch([r])[0].raw_text, requests))
    assert threaded == one
    assert torch.equal(torch.get_rng_state(), rng)  # the process RNG was neither read nor reseeded
    again = [pipe.respond_batch([Request(**{**vars(r), "seed": r.seed + 1})])[0].raw_text for r in requests]
    assert again != one  # the seed decides


def test_interleaved_threads_with_a_barrier(pipe, requests):
    """Two threads start decoding at the same moment, many times: the answers never mix."""
    want = {r.seed: pipe.respond_batch([r])[0].raw_text for r in requests[:2]}
    barrier, got, errors = threading.Barrier(2), [], []

    def worker(r):
        try:
            for _ in range(3):
                barrier.wait()
                got.append((r.seed, pipe.respond_batch([r])[0].raw_text))
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(r,)) for r in requests[:2]]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(got) == 6 and all(text == want[seed] for seed, text in got)


def test_hidden_states_are_those_of_a_training_forward(pipe, requests):
    replies = pipe.respond_batch(requests[:2], output_hidden=True)
    for r, reply in zip(requests[:2], replies):
        assert reply.raw_text == pipe.respond_batch([r])[0].raw_text  # asking for them changes nothing
        enc = pipe.encode(r, reply.demonstration)
        batch = pipe.batch([enc], [r])
        ids = torch.cat([batch["input_ids"], torch.tensor([reply.token_ids])], 1)
        vm = torch.cat([batch["video_mask"], torch.zeros(1, reply.new_tokens, dtype=torch.bool)], 1)
        with torch.no_grad():
            full = pipe.model(ids, torch.ones_like(ids), None, batch.get("video_feats"), batch.get("video_present"),
                              vm, output_hidden_states=True).hidden_states[0, -reply.new_tokens:]
        assert reply.hidden.shape == (reply.new_tokens, pipe.model.llm.config.hidden_size)
        assert torch.allclose(reply.hidden, full, atol=1e-4)


def test_model_generate_returns_hidden_states_of_its_new_tokens(pipe, requests):
    enc = pipe.encode(requests[0], "")
    batch = pipe.batch([enc], requests[:1])
    out = pipe.model.generate(**batch, max_new_tokens=4, do_sample=False, output_hidden_states=True)
    assert out.sequences.shape[1] <= 4 and out.hidden_states.shape[:2] == out.sequences.shape
    ids = torch.cat([batch["input_ids"], out.sequences], 1)
    vm = torch.cat([batch["video_mask"], torch.zeros_like(out.sequences, dtype=torch.bool)], 1)
    with torch.no_grad():
        logits = pipe.model(ids, torch.ones_like(ids), None, batch.get("video_feats"), batch.get("video_present"), vm).logits
    n = batch["input_ids"].shape[1]
    assert logits[0, n - 1:-1].argmax(-1).tolist() == out.sequences[0].tolist()  # greedy: each token the argmax


def test_per_request_settings_are_grouped_and_applied(pipe, requests):
    short = Request(**{**vars(requests[0]), "max_new_tokens": 2, "greedy": True})
    replies = pipe.respond_batch([short, requests[1]])
    assert replies[0].new_tokens <= 2 and replies[1].raw_text == pipe.respond_batch([requests[1]])[0].raw_text
    assert pipe.respond_batch([short])[0].raw_text == replies[0].raw_text


def test_top_p_and_temperature_match_transformers_warpers():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]])
    logits = probs.log()
    kept = warp(logits, DecodeSettings(4, 0, 0, top_p=0.7)).isfinite()
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]  # 0.5 + 0.3 reach 0.7
    s = DecodeSettings(4, 0, 0, temperature=0.8, top_p=0.9)
    theirs = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.8)(None, logits))
    assert torch.equal(warp(logits, s).isfinite(), theirs.isfinite())
    assert torch.allclose(warp(logits, s).softmax(-1), theirs.softmax(-1))


def test_the_run_folder_records_its_stage_and_modules(gen_run):
    meta = json.loads((Path(gen_run.eerg) / "meta.json").read_text())
    assert meta["format"] == 2 and meta["stage"] == "eerg"
    assert meta["modules"]["prefix"] == {"pre_seq_len": 4, "projection": False, "hidden_size": 0, "dropout": 0.0}
    assert meta["modules"]["projector"]["q_dim"] > 0


class EchoHead:
    """A stand-in head: records the reply's emotion and writes one media file per reply."""

    name = "echo"

    def __init__(self, pipeline, cfg):
        self.labels = pipeline.labels

    def apply(self, replies, requests, media_dir):
        media_dir.mkdir(parents=True, exist_ok=True)
        for k, (reply, request) in enumerate(zip(replies, requests)):
            (media_dir / f"{request.sample_id or k}.txt").write_text(reply.response, encoding="utf-8")
            reply.extras[self.name] = {"emotion": reply.emotion, "file": f"{request.sample_id or k}.txt"}


def make_echo_head(pipeline, cfg):
    return EchoHead(pipeline, cfg)


def test_a_registered_head_fills_extras_and_its_fields_join_the_rows(gen_run, pipe, tmp_path):
    from elmd.evaluation.generate import generate_file, media_dir
    from elmd.inference.heads import HEADS, register_head

    register_head("echo", "test_inference:make_echo_head")
    try:
        out = tmp_path / "preds.jsonl"
        meta = generate_file(gen_run.eerg, gen_run.test, out, pipeline=pipe, progress=False, log=lambda m: None,
                             heads=["echo"])
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert meta["heads"] == ["echo"] and len(rows) == 5
        for row in rows:
            assert row["echo"] == {"emotion": row["emotion_pred"], "file": f"{row['sample_id']}.txt"}
            assert (media_dir(out) / row["echo"]["file"]).read_text(encoding="utf-8") == row["response"]
        with pytest.raises(Exception, match="unknown head 'nope'"):
            pipe.with_heads(["nope"])
    finally:
        HEADS.pop("echo", None)


def test_on_token_streams_each_requests_tokens_in_order(pipe, requests):
    seen = {0: [], 1: []}
    replies = pipe.respond_batch(requests[:2], on_token=lambda i, t: seen[i].append(t))
    assert [seen[0], seen[1]] == [r.token_ids for r in replies]
    assert pipe.tokenizer.decode([t for t in seen[0] if t != pipe.tokenizer.eos_id]) == replies[0].raw_text


def test_constrained_emotion_is_always_decided_and_opens_the_reply(gen_run, requests):
    from elmd.models.prompt import label_word_ids

    greedy = load(gen_run.eerg, overrides=["generate.greedy=true"])  # generate.emotion=constrained by default
    free = load(gen_run.eerg, overrides=["generate.greedy=true", "generate.emotion=free"])
    replies = greedy.respond_batch(requests)
    ids = label_word_ids(greedy.tokenizer, greedy.labels)
    for r, reply in zip(requests, replies):
        assert reply.emotion in greedy.labels and reply.emotion_word == greedy.labels.word(reply.emotion)
        assert reply.raw_text.startswith(reply.emotion_word + "\n")  # written first, the reply conditioned on it
        enc = greedy.batch([greedy.encode(r, reply.demonstration)], [r])
        scores = greedy.model.label_logprobs(**{k: v for k, v in enc.items()}, label_ids=ids)[0]
        assert greedy.labels.ids[int(scores.argmax())] == reply.emotion  # the best-scored label word
    parsed = [x.emotion for x in free.respond_batch(requests)]
    assert sum(e is None for e in parsed) >= sum(x.emotion is None for x in replies) == 0
    sampled = [x.emotion for x in load(gen_run.eerg).respond_batch(requests)]  # temperature 0.95, seeded
    assert sampled == [x.emotion for x in load(gen_run.eerg).respond_batch(requests)]


def test_replies_hold_no_control_characters_or_broken_utf8(pipe, requests):
    import unicodedata

    tok = pipe.tokenizer
    banned = set(tok.never_generated_ids())
    assert tok.sp.piece_to_id("<0x0A>") not in banned and tok.eos_id not in banned and tok.gmask_id in banned
    assert any(tok.sp.is_byte(i) for i in banned)
    many = [Request(**{**vars(r), "seed": s, "greedy": False}) for r in requests for s in range(4)]
    for reply in pipe.respond_batch(many):  # the random tiny LM: before the mask it wrote \x17, \x03 and U+FFFD
        assert "\ufffd" not in reply.raw_text and not banned & set(reply.token_ids)
        assert not [c for c in reply.raw_text if unicodedata.category(c) == "Cc" and c != "\n"]


def test_should_stop_ends_a_request_early_and_leaves_the_others(pipe, requests):
    full = pipe.respond_batch(requests[:2], [""] * 2)
    calls = {0: 0}

    def stop(i):
        if i == 0:
            calls[0] += 1
            return calls[0] > 3  # request 0's client leaves after three tokens
        return False

    cut = pipe.respond_batch(requests[:2], [""] * 2, should_stop=stop)
    assert cut[0].token_ids == full[0].token_ids[:3] + [pipe.tokenizer.eos_id] and cut[0].new_tokens == 4
    assert cut[1].raw_text == full[1].raw_text and cut[1].prompt_tokens > 0
