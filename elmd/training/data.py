"""Training data of both stages (paper Sec. 3.4-3.5): samples -> demonstrations -> encoded prompts
+ video features, prepared once per run, and the deterministic sharded batch order.

* **Demonstrations** (part R): one batched retrieval per split with the
  :class:`~retrieval.index.DemonstrationIndex` at ``index.path``; hits from the sample's own
  dialogue are excluded (otherwise a training sample would retrieve its own reply).
  ``prompt.use_demonstration=false`` (the 'w/o ERM' ablation) skips retrieval altogether.
* **Video features**: :class:`~elmd.resources.FeatureStore` reads (or fills) ``vision.feature_cache`` once before
  the loop, so the frozen ViT + Q-Former never runs inside it when the cache is complete.
  ``vision.use_video=false`` (the 'w/o V' ablation) gives prompts without video positions.
* **Batches**: epoch ``e`` visits the samples in a permutation seeded with ``seed + e``; each
  global batch of ``batch_size`` samples is cut into contiguous per-rank shards, and each shard
  into ``grad_accum`` micro-batches (:func:`global_batches`, :func:`rank_micro_batches`). A resumed
  run skips the global batches already consumed in the current epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elmd.data.jsonl import read_samples
from elmd.data.labels import LabelSet
from elmd.data.schema import Sample
from elmd.errors import DataError, ElmdError
from elmd.models.prompt import IGNORE, collate, encode_sample
from elmd.resources import FeatureStore, labels_of, open_index, video_tokens  # noqa: F401  (shared with inference)

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig


def load_split(cfg: ELMDConfig, split: str, labels: LabelSet) -> list[Sample]:
    """Samples of ``data.<split>`` (at most ``data.max_samples``); an empty split is an error."""
    path = getattr(cfg.data, split)
    samples = read_samples(path, labels, cfg.data.max_samples)
    if not samples:
        raise DataError(path, "has no samples (no utterance followed by a labelled reply of another speaker)",
                        f"check data.{split}, or prepare the data again with `elmd data prepare`")
    return samples


def retrieve_demonstrations(cfg: ELMDConfig, samples: list[Sample], labels: LabelSet, index=None) -> list[str]:
    """Part R of every sample ('' for all under ``prompt.use_demonstration=false``)."""
    if not cfg.prompt.use_demonstration:
        return [""] * len(samples)
    from retrieval.demonstration import demonstrations_for

    index = index if index is not None else open_index(cfg)
    return demonstrations_for(index, samples, labels, batch_size=cfg.retrieval.encode_batch_size)


@dataclass
class Split:
    """One split, encoded once: samples, their prompts (input_ids / labels / video_mask) and videos."""

    name: str
    samples: list[Sample]
    encoded: list[dict]
    videos: list[str | None]
    demonstrations: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def target_tokens(self, idx) -> int:
        """Number of target (non -100) tokens of the samples ``idx`` (the loss denominator)."""
        return sum(sum(1 for t in self.encoded[i]["labels"] if t != IGNORE) for i in idx)


def encode_split(cfg: ELMDConfig, name: str, samples: list[Sample], demos: list[str], tokenizer, labels: LabelSet,
                 stage: str) -> Split:
    from elmd.stages import run_target

    n_video, target = video_tokens(cfg), run_target(stage, cfg.train.target)  # train.target=meta: the meta block
    encoded = [encode_sample(s, d, tokenizer, labels, stage, n_video, cfg.prompt, target=target)
               for s, d in zip(samples, demos)]
    videos = [s.video if any(e["video_mask"]) else None for s, e in zip(samples, encoded)]
    return Split(name, samples, encoded, videos, demos)


def prepare_split(cfg: ELMDConfig, name: str, tokenizer, labels: LabelSet, stage: str, index=None, max_samples: int = 0) -> Split:
    """Read, retrieve demonstrations for and encode split ``name`` ('train' / 'valid')."""
    samples = load_split(cfg, name, labels)
    if max_samples > 0:
        samples = samples[:max_samples]
    demos = retrieve_demonstrations(cfg, samples, labels, index)
    return encode_split(cfg, name, samples, demos, tokenizer, labels, stage)


def make_batch(split: Split, idx: list[int], pad_id: int, store: FeatureStore | None, device) -> dict:
    """Collated tensors of samples ``idx`` (left padded) with their video features, on ``device``."""
    batch = collate([split.encoded[i] for i in idx], pad_id)
    if store is not None and batch["video_mask"].any():
        batch["video_feats"] = store([split.videos[i] for i in idx])
    return {k: v.to(device) for k, v in batch.items()}


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Epoch ``epoch``'s global batches: a permutation seeded with ``seed + epoch`` cut into runs of
    ``batch_size`` (the last one may be shorter). Identical on every rank."""
    if n < 1:
        raise ElmdError("no training samples")
    g = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def rank_micro_batches(batch: list[int], rank: int, world: int, grad_accum: int) -> list[list[int]]:
    """This rank's share of a global batch (contiguous, sizes differing by at most one), cut into
    up to ``grad_accum`` micro-batches; empty micro-batches are dropped."""
    shard = _split_even(batch, world)[rank]
    return [mb for mb in _split_even(shard, grad_accum) if mb]


def _split_even(items: list[int], parts: int) -> list[list[int]]:
    q, r = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + q + (1 if k < r else 0)
        out.append(items[start:end])
        start = end
    return out


def fingerprints(cfg: ELMDConfig) -> dict:
    """What the run's inputs were: data files' sha256, the index's and the feature cache's identity."""
    from elmd.io import file_sha256

    out = {}
    for split in ("train", "valid"):
        p = Path(getattr(cfg.data, split))
        out[f"data_{split}"] = {"path": str(p.resolve()), "sha256": file_sha256(p) if p.is_file() else None}
    if cfg.prompt.use_demonstration:
        meta = Path(cfg.index.path) / "meta.json"
        out["index"] = {"path": str(Path(cfg.index.path).resolve()),
                        "meta_sha256": hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else None}
    if cfg.vision.use_video and cfg.vision.feature_cache:
        meta = Path(cfg.vision.feature_cache) / "meta.json"
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        out["feature_cache"] = {"path": str(Path(cfg.vision.feature_cache).resolve()),
                                "encoder_fingerprint": info.get("encoder_fingerprint")}
    return out
