"""Pre-training the tiny preset's LLM: a small GLM with ChatGLM2's architecture as a causal LM on
train-split dialogues (`elmd lm pretrain`; a CPU stand-in for ChatGLM2-6B's pre-training, which
the paper's frozen LLM has and a random tiny one lacks — issue 12).

A frozen *random* LLM cannot be taught to speak by a prefix and a Linear; one that has read the
train split's dialogues can. The model is ``GlmForCausalLM`` (:func:`elmd.models.glm.glm_config`:
RMSNorm, 2 key/value groups, interleaved rotary on half of each head, SwiGLU, untied output) at
the sizes of ``lm_pretrain.*``; its SentencePiece tokenizer (:func:`elmd.models.tokenizer.train_tiny_tokenizer`,
sized by :func:`elmd.models.presets.tiny_vocab_size`) is trained on the same text. The rows it
reads are described in :mod:`elmd.training.lm_data`.

Setup -> fit -> save, top to bottom:

* **cache**: the output's ``meta.json`` holds a key = sha256 of the inputs' sha256 and the
  settings; the same key is reused, another one is refused unless ``overwrite``;
* **resumable**: checkpoints (model, AdamW, schedule, RNG — :mod:`elmd.training.checkpoint`) go
  to ``.<out>.lm-work/`` beside the output; a rerun with the same key continues from the last one
  and reaches the same weights as an uninterrupted run (the batch order is a pure function of the
  seed and the epoch);
* **output**: an ordinary HF folder (``config.json`` + ``model.safetensors`` by ``save_pretrained``)
  + ``tokenizer.model`` + ``meta.json``, swapped in whole (:func:`elmd.io.atomic_dir`). Load it
  with ``llm.path=OUT llm.tokenizer=OUT/tokenizer.model`` (preset tiny or chatglm2-6b code path).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from elmd.errors import ElmdError
from elmd.io import atomic_dir, atomic_write_json, atomic_write_text, file_sha256
from elmd.training import lm_data
from elmd.training.lm_config import LMPretrainConfig

FORMAT = 1
"""Bumped when the rows or the training procedure change (part of the cache key)."""


@dataclass
class LMPretrainResult:
    """What :func:`pretrain_lm` did: the output folder, whether it was reused, and its meta.json."""

    out: Path
    reused: bool
    meta: dict


def cache_key(paths, cfg: LMPretrainConfig) -> tuple[str, list[dict]]:
    """(key, inputs): the sha256 of the format, the inputs' sha256 in order and the settings."""
    inputs = [{"path": str(p), "sha256": file_sha256(p)} for p in paths]
    blob = json.dumps({"format": FORMAT, "inputs": [i["sha256"] for i in inputs], "settings": asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest(), inputs


def glm_config_for(cfg: LMPretrainConfig, tok):
    """ChatGLM2's architecture at the sizes of ``cfg`` with the tokenizer's vocabulary and ids."""
    from elmd.models.glm import glm_config

    return glm_config(tok.vocab_size, tok.pad_id, tok.eos_id, num_hidden_layers=cfg.layers, hidden_size=cfg.hidden,
                      num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads, head_dim=cfg.hidden // cfg.heads,
                      intermediate_size=cfg.intermediate, max_position_embeddings=max(2048, cfg.seq_len))


def _existing_key(out: Path) -> str | None:
    meta = out / "meta.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("key")
    except (ValueError, AttributeError):
        return None


def pretrain_lm(paths, out: str | Path, cfg: LMPretrainConfig, overwrite: bool = False, progress: bool = True,
                on_step=None) -> LMPretrainResult:
    """Pre-train on the train files ``paths`` and write the folder ``out`` (module docstring).
    ``on_step(step)`` is called after every optimiser step (tests interrupt a run with it)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ElmdError("no --data given — pass the train split, e.g. --data runs/sample/data/train.jsonl")
    for p in paths:
        lm_data.check_train_file(p)
    out = Path(out)
    key, inputs = cache_key(paths, cfg)
    old = _existing_key(out)
    if old == key and not overwrite:
        return LMPretrainResult(out, True, json.loads((out / "meta.json").read_text(encoding="utf-8")))
    if out.exists() and not overwrite:
        what = "an LM pre-trained on other inputs or settings" if old else "something that is not a pre-trained LM"
        raise ElmdError(f"{out}: holds {what} — pass --overwrite to replace it, or choose another --out")
    work = out.with_name(f".{out.name}.lm-work")
    if not (work / "key.txt").is_file() or (work / "key.txt").read_text().strip() != key:
        shutil.rmtree(work, ignore_errors=True)
        atomic_write_text(work / "key.txt", key + "\n")
    meta = _train(paths, work, cfg, key, progress, on_step)
    meta = {**meta, "key": key, "inputs": inputs, "settings": asdict(cfg)}
    model, tok = meta.pop("_model"), meta.pop("_tokenizer")
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        shutil.copyfile(tok.path, tmp / "tokenizer.model")
        atomic_write_json(tmp / "meta.json", meta)
    shutil.rmtree(work, ignore_errors=True)
    return LMPretrainResult(out, False, meta)


def _train(paths, work: Path, cfg: LMPretrainConfig, key: str, progress: bool, on_step) -> dict:
    from elmd.models.glm import random_glm
    from elmd.models.presets import tiny_tokenizer, tiny_vocab_size
    from elmd.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    wall0, cpu0 = time.time(), time.process_time()
    dialogues = lm_data.read_corpus(paths)
    texts = lm_data.tokenizer_texts(dialogues)
    tok = tiny_tokenizer(texts, work / "tokenizer.model", tiny_vocab_size(texts, cfg.vocab_size))
    train_d, held_d = lm_data.split_heldout(dialogues, cfg.heldout_share, cfg.seed)
    rows = [lm_data.dialogue_row(d, tok) for d in train_d]
    held_rows = {"dialogue": [lm_data.dialogue_row(d, tok) for d in held_d]}
    if cfg.prompt_share > 0:
        rows += lm_data.prompt_rows(train_d, tok, cfg.seq_len, cfg.seed, cfg.emotion_loss, cfg.prompt_share,
                                    cfg.video_share, cfg.video_tokens)
        held_rows["reply"] = lm_data.prompt_rows(held_d, tok, cfg.seq_len, cfg.seed, cfg.emotion_loss)
    held = {k: lm_data.pack(v, cfg.seq_len, tok.pad_id) for k, v in held_rows.items()}
    steps = total_steps(rows, cfg, tok.pad_id)

    model = random_glm(glm_config_for(cfg, tok), seed=cfg.seed).train()
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup, steps))
    state = {"step": 0, "history": [], "tokens": 0, "running": [0.0, 0], "seconds": 0.0, "cpu_seconds": 0.0}
    ckpt = latest_checkpoint(work)
    if ckpt is not None:
        state.update(load_checkpoint(ckpt, model, opt, sched)["meta"])
    resumed_at = state["step"]
    stream = itertools.islice(lm_data.batch_stream(rows, cfg.seq_len, cfg.batch_size, tok.pad_id, cfg.seed), resumed_at, steps)
    bar = tqdm(total=steps, initial=resumed_at, desc="pretrain tiny LM", unit="step", disable=not progress)
    for epoch, ids, labels in stream:
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        state["step"] += 1
        state["tokens"] += int((ids != tok.pad_id).sum())
        state["running"] = [state["running"][0] + loss.item(), state["running"][1] + 1]
        step = state["step"]
        if step % cfg.eval_every == 0 or step == steps:
            state["history"].append(_evaluate(model, held, cfg, step, epoch, state))
            bar.set_postfix(loss=f"{state['history'][-1]['train_loss']:.3f}", heldout=f"{state['history'][-1]['heldout_loss']}")
        bar.update()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps:
            now = {"seconds": state["seconds"] + time.time() - wall0, "cpu_seconds": state["cpu_seconds"] + time.process_time() - cpu0}
            save_checkpoint(work, step, dict(model.named_parameters()), opt, sched, epoch=epoch,
                            meta={**state, **now, "key": key}, keep=1)
        if on_step is not None:
            on_step(step)
    bar.close()
    model.eval()
    seconds = state["seconds"] + time.time() - wall0
    cpu = state["cpu_seconds"] + time.process_time() - cpu0
    last = state["history"][-1] if state["history"] else {}
    return {"what": "tiny GLM (ChatGLM2 architecture) pre-trained as a causal LM on train-split dialogues "
                    "(elmd.training.lm_pretrain)",
            "params": sum(p.numel() for p in model.parameters()), "vocab_size": tok.vocab_size,
            "rows": {"train": len(rows), "heldout": {k: len(v) for k, v in held_rows.items()},
                     "train_dialogues": len(train_d), "heldout_dialogues": len(held_d)},
            "steps": steps, "resumed_at_step": resumed_at, "tokens_seen": state["tokens"], "history": state["history"],
            "heldout_loss": last.get("heldout_loss"), "heldout_ppl": _ppl(last.get("heldout_loss")),
            "heldout_reply_loss": last.get("heldout_reply_loss"), "heldout_reply_ppl": _ppl(last.get("heldout_reply_loss")),
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "tokens_per_cpu_second": round(state["tokens"] / max(cpu, 1e-9), 1), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "_model": model, "_tokenizer": tok}


def total_steps(rows, cfg: LMPretrainConfig, pad_id: int) -> int:
    """Optimiser steps: max_tokens / (batch_size x seq_len) when set, else the epochs' steps."""
    if cfg.max_tokens > 0:
        return max(1, -(-cfg.max_tokens // (cfg.batch_size * cfg.seq_len)))
    return sum(lm_data.steps_per_epoch(rows, cfg.seq_len, cfg.batch_size, pad_id, cfg.seed, cfg.epochs))


def make_optimizer(model: torch.nn.Module, cfg: LMPretrainConfig) -> torch.optim.AdamW:
    """AdamW (betas 0.9 / 0.95); no weight decay on norms and biases."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, 0.95))


def lr_lambda(warmup: int, steps: int):
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10 % of the peak at ``steps``."""
    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        t = min(1.0, (s - warmup) / max(1, steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))
    return f


@torch.no_grad()
def heldout_loss(model, ids: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float | None:
    """Mean next-token cross-entropy (nats) over the labelled tokens of held-out blocks; None if none."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(ids), batch_size):
        logits = model(input_ids=ids[i:i + batch_size]).logits[:, :-1].float()
        tgt = labels[i:i + batch_size, 1:]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                                 reduction="sum").item()
        n += int((tgt != -100).sum())
    model.train(was)
    return round(total / n, 4) if n else None


def _evaluate(model, held: dict, cfg: LMPretrainConfig, step: int, epoch: int, state: dict) -> dict:
    run_sum, run_n = state["running"]
    state["running"] = [0.0, 0]
    row = {"step": step, "epoch": epoch, "tokens": state["tokens"], "train_loss": round(run_sum / max(run_n, 1), 4)}
    for name, (ids, labels) in held.items():
        row["heldout_loss" if name == "dialogue" else f"heldout_{name}_loss"] = heldout_loss(model, ids, labels, cfg.batch_size)
    return row


def _ppl(loss: float | None) -> float | None:
    return round(math.exp(loss), 2) if loss is not None else None
