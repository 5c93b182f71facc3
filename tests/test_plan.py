"""`elmd plan` (elmd.plan): the meta-device estimate of a tiny step against a real CPU step of the real
code (activation bytes exactly via saved-tensor hooks, the forward/backward peak via torch's profiler,
weights / gradients / AdamW state exactly), the knob named when a plan does not fit, the lengths
layout, and the full-size parameter counts (ChatGLM2-6B, BLIP-2 ViT-g + Q-Former)."""

from __future__ import annotations

import json

import pytest
import torch

from elmd.config import load_config
from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.models.elmd_model import ELMDModel
from elmd.models.glm import random_glm, tiny_config
from elmd.models.grad_ckpt import disable_checkpointing, enable_checkpointing
from elmd.models.pooling import VideoProjector, num_video_tokens
from elmd.models.prompt import collate, encode_sample
from elmd.plan import Hardware, Memory, make_plan, parse_size
from elmd.plan.accounting import SavedBytes
from elmd.plan.estimate import advise
from elmd.plan.lengths import Lengths, layout, lengths_from_data, lengths_from_limits
from elmd.plan.meta_model import build_meta_model
from elmd.plan.step import MicroBatch, measure_memory
from elmd.training.loop import TargetTokenLoss

Q_DIM = 64  # the tiny visual encoder's q
ACT_TOL = 0.01  # the estimate's activation bytes are within 1 % of the real step's (measured: 0.01-0.1 %)
PEAK_TOL = 0.05  # its forward/backward peak within 5 % of the peak torch's profiler measures (measured: 0.6-1.1 %)


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer, llm_dialogues_jsonl):
    """Tiny config (eager attention, prefix without dropout) and a batch of the samples with video."""
    cfg = load_config("tiny", ["prefix.dropout=0.0"])
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    n_video = num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens)
    samples = [s for s in read_samples(llm_dialogues_jsonl) if s.video][:4]
    batch = collate([encode_sample(s, "", tiny_tokenizer, labels, "eerg", n_video, cfg.prompt) for s in samples],
                    tiny_tokenizer.pad_id)
    batch["video_feats"] = torch.randn(len(samples), cfg.vision.num_frames, cfg.vision.num_query_tokens, Q_DIM,
                                       generator=torch.Generator().manual_seed(0))
    return cfg, tiny_tokenizer, batch


def real_model(cfg, tok, stage):
    glm = tiny_config(tok.vocab_size, tok.pad_id, tok.eos_id)
    glm._attn_implementation = "eager"
    torch.manual_seed(0)
    model = ELMDModel(random_glm(glm), VideoProjector(Q_DIM, glm.hidden_size))
    if stage == "eerg":
        model.attach_prefix(cfg.prefix, seed=0)
    model.train()
    model.llm.eval()
    return model


def real_step(model, batch, n_tokens):
    """What elmd.training.loop.train_step does for one micro-batch."""
    inputs = dict(batch)
    labels = inputs.pop("labels")
    logits = model(**inputs).logits
    loss = TargetTokenLoss()(logits, labels) / n_tokens
    loss.backward()


def profiled_peak(fn, tmp_path) -> int:
    """Peak bytes the CPU allocator held during ``fn`` above what it held before (torch's profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = [e["args"] for e in json.loads(trace.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    return max(e["Total Allocated"] for e in events)


def measured(cfg, tok, batch, stage, checkpointing, tmp_path) -> dict:
    model = real_model(cfg, tok, stage)
    n = int((batch["labels"] != -100).sum())
    if checkpointing:
        enable_checkpointing(model.llm)
    with SavedBytes(list(model.parameters())) as saved:  # activations, exactly (checkpointing: outside layers)
        real_step(model, batch, n)
    activations = saved.total
    saved.release()
    model.zero_grad(set_to_none=True)
    peak = profiled_peak(lambda: real_step(model, batch, n), tmp_path)
    if checkpointing:
        disable_checkpointing(model.llm)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return dict(activations=activations, peak=peak, grads=grads, optimizer=state, weights=weights, targets=n)


def estimated(cfg, tok, batch, stage, checkpointing, targets):
    meta = build_meta_model(cfg, stage, tok.vocab_size, attention="eager")
    mb = MicroBatch(batch["input_ids"].shape[0], batch["input_ids"].shape[1], targets, video=True)
    fig = measure_memory(meta.model, mb, (cfg.vision.num_frames, cfg.vision.num_query_tokens, Q_DIM), checkpointing)
    return meta, fig


@pytest.mark.parametrize("stage,checkpointing", [("rep", False), ("eerg", False), ("eerg", True)])
def test_tiny_estimate_matches_a_real_step(tiny, stage, checkpointing, tmp_path):
    cfg, tok, batch = tiny
    real = measured(cfg, tok, batch, stage, checkpointing, tmp_path)
    meta, est = estimated(cfg, tok, batch, stage, checkpointing, real["targets"])
    assert meta.param_bytes(meta.model) == real["weights"]
    assert est.grad_bytes == real["grads"]
    assert meta.params(meta.model, trainable=True) * 8 == real["optimizer"]  # AdamW: 2 fp32 states
    # (under checkpointing, on both sides, the hooks see only what is saved outside the checkpointed layers)
    assert abs(est.saved_bytes - real["activations"]) <= ACT_TOL * real["activations"], (est.saved_bytes, real)
    assert abs(est.peak_bytes - real["peak"]) <= PEAK_TOL * real["peak"], (est.peak_bytes, real)


def test_checkpointing_cuts_the_estimated_activations(tiny):
    cfg, tok, batch = tiny
    _, plain = estimated(cfg, tok, batch, "eerg", False, 40)
    _, ckpt = estimated(cfg, tok, batch, "eerg", True, 40)
    assert ckpt.forward_bytes < 0.7 * plain.forward_bytes and ckpt.peak_bytes < plain.peak_bytes


def test_layout_follows_the_training_loop_batches():
    lengths = Lengths("test", prompt=[10, 20, 30, 40, 50, 60, 70, 80], target=[1, 2, 3, 4, 5, 6, 7, 8], video=[True] * 8)
    lay = layout(lengths, batch_size=4, gpus=2, grad_accum=1, seed=0)
    assert lay.steps == 2 and lay.micro_per_step == 1
    assert lay.worst == MicroBatch(rows=2, width=88, targets=15, video=True)  # 2 longest rows, longest sample
    assert lay.tokens_per_step == sum(lengths.total) / 2
    assert lay.padded_tokens_per_step >= lay.tokens_per_step
    assert layout(lengths, 4, 1, 2, 0).micro_per_step == 2


def test_lengths_from_data_are_the_training_encoding(tiny_tokenizer, llm_dialogues_jsonl):
    cfg = load_config("tiny", ["prompt.use_demonstration=false"])
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    n_video = num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens)
    samples = read_samples(llm_dialogues_jsonl)
    lengths = lengths_from_data(cfg, "eerg", llm_dialogues_jsonl, tiny_tokenizer, "tiny")
    encoded = [encode_sample(s, "", tiny_tokenizer, labels, "eerg", n_video, cfg.prompt) for s in samples]
    assert lengths.total == [len(e["input_ids"]) for e in encoded]
    assert lengths.target == [sum(1 for t in e["labels"] if t != -100) for e in encoded]
    assert lengths.video == [s.video is not None for s in samples] and any(lengths.video) and not all(lengths.video)
    demo = lengths_from_data(load_config("tiny"), "eerg", llm_dialogues_jsonl, tiny_tokenizer, "tiny")
    assert all(d > p for d, p in zip(demo.prompt, lengths.prompt))  # the stand-in demonstration R is in the prompt
    limits = lengths_from_limits(load_config("chatglm2-6b"), "eerg")
    assert set(limits.total) == {1024 + 128} and len(limits.total) == 16 and not limits.from_data


def test_advise_names_the_knob():
    gib = 2**30
    hw = Hardware(gpus=4, gpu_mem=40 * gib, overhead_gib=0, fragmentation=0)
    cfg = load_config("chatglm2-6b")
    mem = Memory(weights=12 * gib, gradients=0, optimizer=0, activations=20 * gib, activations_ckpt=2 * gib,
                 step_peak=30 * gib, step_peak_ckpt=4 * gib)
    assert advise(mem, cfg, hw, rows=4, checkpointing=False).startswith("checkpointing: set train.gradient_checkpointing=true")
    small = Hardware(gpus=4, gpu_mem=14 * gib, overhead_gib=0, fragmentation=0)
    assert advise(mem, cfg, small, rows=4, checkpointing=True).startswith("micro-batch: set train.grad_accum=2")
    assert advise(mem, cfg, Hardware(gpu_mem=10 * gib), rows=4, checkpointing=True).startswith("ZeRO")
    fp32 = load_config("chatglm2-6b", ["llm.dtype=float32"])
    big = Memory(weights=24 * gib, gradients=0, optimizer=0, activations=30 * gib, activations_ckpt=4 * gib,
                 step_peak=30 * gib, step_peak_ckpt=8 * gib)
    assert advise(big, fp32, hw, rows=4, checkpointing=False).startswith("bf16")
    assert advise(mem, cfg, hw, rows=4, checkpointing=True) == ""


def test_parse_size():
    assert parse_size("40GiB") == 40 * 2**30 and parse_size("80 GB") == 80 * 10**9 and parse_size("512mib") == 512 * 2**20
    from elmd.errors import ConfigError

    with pytest.raises(ConfigError, match="--gpu-mem 'forty'"):
        parse_size("forty")


def test_full_size_parameter_counts():
    p = make_plan(load_config("chatglm2-6b"), Hardware(), stages=()).params  # the meta model only, no step
    assert p.llm == 6_243_584_000  # ChatGLM2-6B (THUDM/chatglm2-6b: 6.24B)
    # BLIP-2's EVA ViT-g/14 without its last layer: 39 x 1408, 16 x 16 patches of 14 px + class token.
    h, f, n = 1408, 6144, 257
    layer = (h * 3 * h + 3 * h) + (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
    assert p.vit == 3 * 14 * 14 * h + h + h + n * h + 39 * layer + 2 * h == 985_952_256
    # transformers' Blip2QFormerModel (the query path; the BLIP-2 paper's 188M also counts the BERT word
    # embeddings and text-only layers, unused by ELMD) + 32 query tokens of 768.
    assert p.qformer == 105_137_664 + 32 * 768
    assert p.projector == 768 * 4096 + 4096
    assert p.prefix == 128 * 28 * 2 * 2 * 128  # P x layers x (k, v) x KV groups x head dim


@pytest.mark.slow  # ~10-30 s: four full-size meta-device steps per stage
def test_full_size_plan_fits_the_papers_setup():
    full_plan = make_plan(load_config("chatglm2-6b"), Hardware(gpus=4, gpu_mem=40 * 2**30), config_name="chatglm2-6b")
    rep, eerg = full_plan.stages
    assert full_plan.fits and (rep.stage, eerg.stage) == ("rep", "eerg")
    assert eerg.layout.worst.rows == 4 and eerg.layout.worst.width == 1024 + 128  # batch 16 over 4 GPUs
    gib = 2**30
    assert 11.5 * gib < eerg.memory.weights < 11.8 * gib  # 6.24B bf16 + fp32 trainables
    assert eerg.memory.activations_ckpt < eerg.memory.activations / 5
    # Frozen LLM: forward 2 N + input-gradient backward 2 N FLOPs per token (N = non-embedding weights),
    # not full fine-tuning's 6 N; attention adds ~5 %.
    n_matmul = 6_243_584_000 - 65024 * 4096
    assert 1.0 < eerg.flops / (4 * n_matmul * 4 * 1152) < 1.1
    assert eerg.flops_ckpt > 1.2 * eerg.flops  # recomputation costs about a forward
    assert full_plan.seconds > 0  # its time is a benchmark (BENCHMARKS.md: ~30 s), not a test


@pytest.mark.slow  # ~10-20 s: one full-size stage
def test_cli_exits_3_naming_the_knob():
    from click.testing import CliRunner

    from elmd.cli.main import main

    res = CliRunner().invoke(main, ["plan", "--config", "chatglm2-6b", "--gpu-mem", "24GiB", "--stage", "eerg"])
    assert res.exit_code == 3, res.output
    assert "does not fit: stage eerg" in res.output and "train.gradient_checkpointing=true" in res.output


def test_gpu_attention_saves_what_the_memory_efficient_kernel_keeps():
    """The A100 attention model: GQA keys/values repeated to every head, an additive bias from the mask;
    backward keeps q, k, v (repeated), the output, the log-sum-exp (rows padded to 32), the bias and the
    dropout RNG's seed and offset (two int64)."""
    from elmd.plan.meta_model import mem_efficient_attention

    B, H, KV, T, P, D = 2, 4, 2, 40, 8, 16
    q = torch.zeros(B, H, T, D, device="meta", dtype=torch.bfloat16, requires_grad=True)
    k = torch.zeros(B, KV, P + T, D, device="meta", dtype=torch.bfloat16, requires_grad=True)
    v = torch.zeros(B, KV, P + T, D, device="meta", dtype=torch.bfloat16, requires_grad=True)
    mask = torch.ones(B, 1, T, P + T, device="meta", dtype=torch.bool)
    with SavedBytes([]) as saved:
        out, _ = mem_efficient_attention(None, q, k, v, mask, scaling=D ** -0.5)
    assert out.shape == (B, T, H, D)
    two = 2  # bytes of bf16
    expected = (B * H * T * D + 2 * B * H * (P + T) * D + B * H * T * D + B * T * (P + T)) * two + B * H * 64 * 4 + 2 * 8
    assert saved.total == expected
