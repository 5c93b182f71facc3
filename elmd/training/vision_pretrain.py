"""Pre-training the tiny visual encoder on synthetic face attributes (a stand-in for BLIP-2's
pre-training, paper Sec. 3.4 uses a frozen *pre-trained* ViT + Q-Former).

ELMD's visual encoder is frozen, so what it has learned before ELMD is what stage ``rep`` can use.
A *random* tiny ViT + Q-Former has learned nothing: on the bundled sample, whose listener faces
carry the reply's emotion, stage rep with it stays at the label prior (BENCHMARKS.md, "REP valid
emotion accuracy"). This module gives the tiny encoder a pre-training of its own, on data that
has nothing to do with the sample's dialogues or emotion labels:

* frames of *new* people (identities ``pretrain/<i>``, never ``<dialogue>/<speaker>``) drawn by
  :mod:`elmd.data.faces`, each with every expression attribute (mouth curve, opening, width, brow
  height and tilt, eye opening, lip raise, nose wrinkle, teeth) drawn independently and uniformly
  from its range, and a random head pose and blink;
* target: the attribute vector (each scaled to [0, 1]); a linear head on the *mean* of the
  Q-Former's query outputs regresses it (mean squared error). The mean is what matters: stage rep
  reads the video tokens through a frozen LLM, and a random tiny LLM attends almost uniformly, so
  it sees little more than the tokens' average. Trained this way the queries carry the face's
  attributes in their sum, as a trained Q-Former's queries carry an image's content; a loss on
  each query separately learned far slower (mean R^2 0.10 against 0.29 after 5 epochs).

So the encoder learns facial geometry, not emotions: which geometry goes with which reply emotion
is still for stage rep to learn. The result is an ordinary BLIP-2 folder (``config.json`` +
``model.safetensors`` in the ``vision_model.* / qformer.* / query_tokens`` layout) plus
``meta.json``; point ``vision.path`` at it and :meth:`VisualEncoder.from_blip2` loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from elmd.io import atomic_dir, atomic_write_json

if TYPE_CHECKING:  # annotations only
    from elmd.models.config import VisionPretrainConfig

ATTRIBUTES = ("mouth_curve", "mouth_open", "mouth_width", "brow_raise", "brow_tilt", "eye_open", "lip_raise",
              "nose_wrinkle", "teeth")


def attribute_ranges() -> dict[str, tuple[float, float]]:
    """[min, max] of each attribute over the expression presets of :mod:`elmd.data.faces`."""
    from elmd.data.faces import EXPRESSIONS

    return {a: (min(getattr(e, a) for e in EXPRESSIONS.values()), max(getattr(e, a) for e in EXPRESSIONS.values()))
            for a in ATTRIBUTES}


def render_frames(n: int, cfg: VisionPretrainConfig, split: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` frames of new people: uint8 ``[n, S, S, 3]`` (S = ``cfg.render_size``) and their
    attributes ``[n, len(ATTRIBUTES)]`` scaled to [0, 1] by :func:`attribute_ranges`.
    ``cfg``: :class:`~elmd.models.config.VisionPretrainConfig`; deterministic in (cfg.seed, split)."""
    from elmd.data.faces import Expression, Motion, draw_face, identity_for

    rng = np.random.default_rng([cfg.seed, {"train": 0, "valid": 1}[split]])
    ranges = attribute_ranges()
    images = np.zeros((n, cfg.render_size, cfg.render_size, 3), dtype=np.uint8)
    targets = rng.uniform(0.0, 1.0, size=(n, len(ATTRIBUTES)))
    for i in tqdm(range(n), desc=f"draw {split} faces", unit="frame", disable=not progress, leave=False):
        values = {a: lo + (hi - lo) * targets[i, k] for k, (a, (lo, hi)) in enumerate(ranges.items())}
        motion = Motion(dx=rng.uniform(-0.02, 0.02), dy=rng.uniform(-0.015, 0.015), tilt=rng.uniform(-4, 4),
                        blink=float(rng.uniform(0, 1)) if rng.uniform() < 0.15 else 0.0)
        identity = identity_for(f"pretrain-{cfg.seed}/{split}/{i}")  # never a sample's "<dialogue>/<speaker>"
        images[i] = draw_face(Expression(**values), identity, cfg.render_size, motion)
    return torch.from_numpy(images), torch.from_numpy(targets).float()


def _r2(pred: torch.Tensor, target: torch.Tensor) -> list[float]:
    ss_res = ((pred - target) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0).clamp(min=1e-12)
    return (1 - ss_res / ss_tot).tolist()


@torch.no_grad()
def evaluate_r2(enc, head, images: torch.Tensor, targets: torch.Tensor, image_size: int) -> dict[str, float]:
    """R^2 of each attribute on held-out frames, predicted from the mean of the query outputs."""
    from elmd.models.video import to_model_input

    preds = [head(enc(to_model_input(images[i:i + 64], image_size)).mean(1)) for i in range(0, len(images), 64)]
    return dict(zip(ATTRIBUTES, _r2(torch.cat(preds), targets)))


def settings(pcfg, vision) -> dict:
    """What decides the pre-trained weights (an output with the same settings is reused)."""
    return {**asdict(pcfg), "image_size": vision.image_size, "num_query_tokens": vision.num_query_tokens}


def pretrain_tiny_encoder(pcfg, vision, out: str | Path, progress: bool = True, force: bool = False) -> dict:
    """Pre-train :meth:`VisualEncoder.tiny` (at ``vision.image_size`` with
    ``vision.num_query_tokens`` queries) on face attributes and write a BLIP-2 folder to ``out``;
    returns its meta. An existing ``out`` with the same settings is kept (``meta["reused"]``)
    unless ``force``. ``pcfg``: VisionPretrainConfig, ``vision``: VisionConfig."""
    from elmd.models.visual_encoder import VisualEncoder

    want = settings(pcfg, vision)
    meta_file = Path(out) / "meta.json"
    if not force and meta_file.exists():
        old = json.loads(meta_file.read_text(encoding="utf-8"))
        if old.get("settings") == want:
            return {**old, "reused": True}
    t0 = time.time()
    train = render_frames(pcfg.train_frames, pcfg, "train", progress)
    valid = render_frames(pcfg.valid_frames, pcfg, "valid", progress)
    enc = VisualEncoder.tiny(seed=pcfg.seed, image_size=vision.image_size, num_query_tokens=vision.num_query_tokens)
    history = fit_attributes(enc, train, valid, pcfg, vision.image_size, progress)
    enc.requires_grad_(False)
    meta = {"what": "tiny ViT + Q-Former pre-trained on synthetic face attributes (elmd.training.vision_pretrain)",
            "settings": want, "attributes": list(ATTRIBUTES), "history": history,
            "valid_r2": history[-1]["valid_r2"] if history else {}, "seconds": round(time.time() - t0, 1)}
    save_blip2_folder(enc, out, meta)
    return {**meta, "reused": False}


def fit_attributes(enc, train, valid, pcfg, image_size: int, progress: bool = True) -> list[dict]:
    """AdamW + cosine schedule on the MSE of a linear head over the queries' mean; per-epoch
    train MSE and held-out R^2. Trains ``enc`` in place (in eval mode: no dropout)."""
    from elmd.models.video import to_model_input

    (train_x, train_y), (valid_x, valid_y) = train, valid
    enc.requires_grad_(True)
    gen = torch.Generator().manual_seed(pcfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(pcfg.seed)
        head = torch.nn.Linear(enc.q_dim, len(ATTRIBUTES))
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=pcfg.lr, weight_decay=0.01)
    steps = max(1, pcfg.epochs * -(-len(train_x) // pcfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    bar = tqdm(total=steps, desc="pretrain tiny encoder", unit="step", disable=not progress)
    history = []
    for epoch in range(pcfg.epochs):
        total = 0.0
        for idx in torch.randperm(len(train_x), generator=gen).split(pcfg.batch_size):
            pred = head(enc(to_model_input(train_x[idx], image_size)).mean(1))  # [B, Q, q] -> [B, q] -> [B, 9]
            loss = ((pred - train_y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        r2 = evaluate_r2(enc, head, valid_x, valid_y, image_size)
        history.append({"epoch": epoch + 1, "train_mse": total / len(train_x), "valid_r2": r2,
                        "valid_r2_mean": float(np.mean(list(r2.values())))})
    bar.close()
    return history


def save_blip2_folder(enc, out: str | Path, meta: dict) -> Path:
    """``config.json`` (BLIP-2 vision + Q-Former configs) + ``model.safetensors`` + ``meta.json``,
    swapped in whole (:func:`elmd.io.atomic_dir`): an old ``out`` is replaced only once the new one
    is complete."""
    from safetensors.torch import save_file

    config = {"model_type": "blip-2", "num_query_tokens": enc.num_query_tokens,
              "vision_config": enc.vision_model.config.to_dict(), "qformer_config": enc.qformer.config.to_dict()}
    with atomic_dir(out) as tmp:
        atomic_write_json(tmp / "config.json", config)
        save_file({k: v.detach().contiguous() for k, v in enc.state_dict().items()}, str(tmp / "model.safetensors"))
        atomic_write_json(tmp / "meta.json", meta)
    return Path(out)
