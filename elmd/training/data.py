"""Training data of both stages (paper Sec. 3.4-3.5): samples -> demonstrations -> encoded prompts
+ video features, prepared once per run, and the deterministic sharded batch order.

* **Demonstrations** (part R): one batched retrieval per split with the
  :class:`~retrieval.index.DemonstrationIndex` at ``index.path``; hits from the sample's own
  dialogue are excluded (otherwise a training sample would retrieve its own reply).
  ``prompt.use_demonstration=false`` (the 'w/o ERM' ablation) skips retrieval altogether.
* **Video features**: :class:`FeatureStore` reads (or fills) ``vision.feature_cache`` once before
  the loop, so the frozen ViT + Q-Former never runs inside it when the cache is complete.
  ``vision.use_video=false`` (the 'w/o V' ablation) gives prompts without video positions.
* **Batches**: epoch ``e`` visits the samples in a permutation seeded with ``seed + e``; each
  global batch of ``batch_size`` samples is cut into contiguous per-rank shards, and each shard
  into ``grad_accum`` micro-batches (:func:`global_batches`, :func:`rank_micro_batches`). A resumed
  run skips the global batches already consumed in the current epoch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elmd.data.jsonl import read_samples
from elmd.data.labels import LabelSet, label_set_from_config
from elmd.data.schema import Sample
from elmd.errors import DataError, ElmdError
from elmd.models.pooling import num_video_tokens
from elmd.models.prompt import IGNORE, collate, encode_sample


def labels_of(cfg) -> LabelSet:
    return label_set_from_config(cfg.data.labels, cfg.data.label_names)


def load_split(cfg, split: str, labels: LabelSet) -> list[Sample]:
    """Samples of ``data.<split>`` (at most ``data.max_samples``); an empty split is an error."""
    path = getattr(cfg.data, split)
    samples = read_samples(path, labels, cfg.data.max_samples)
    if not samples:
        raise DataError(path, "has no samples (no utterance followed by a labelled reply of another speaker)",
                        f"check data.{split}, or prepare the data again with `elmd data prepare`")
    return samples


def retrieve_demonstrations(cfg, samples: list[Sample], labels: LabelSet, index=None) -> list[str]:
    """Part R of every sample ('' for all under ``prompt.use_demonstration=false``)."""
    if not cfg.prompt.use_demonstration:
        return [""] * len(samples)
    from retrieval.demonstration import demonstrations_for

    index = index if index is not None else open_index(cfg)
    return demonstrations_for(index, samples, labels, batch_size=cfg.retrieval.encode_batch_size)


def open_index(cfg):
    """The demonstration index at ``index.path`` (its own encoder; another one is refused)."""
    from retrieval.index import DemonstrationIndex

    if not Path(cfg.index.path).is_dir():
        raise ElmdError(f"index.path '{cfg.index.path}' does not exist — build it with `elmd index build`, "
                        "or train without demonstrations (prompt.use_demonstration=false)")
    index = DemonstrationIndex.load(cfg.index.path, use_gpu=cfg.index.use_gpu, device=cfg.retrieval.device)
    check_index_variant(cfg, index.meta, cfg.index.path)
    return index


def check_index_variant(cfg, meta: dict, path) -> None:
    """Under ``retrieval.ert=false`` / ``retrieval.ssc=false`` (the w/o ERT / w/o SSC ablations) the
    index must not come from a retriever trained with that component (its label says '+ERT' / '+SSC')."""
    label = meta.get("encoder", {}).get("label", "")
    for name in ("ert", "ssc"):
        if not getattr(cfg.retrieval, name) and f"+{name.upper()}" in label:
            raise ElmdError(f"{path}: built by a retriever trained with {name.upper()} ('{label}') but retrieval.{name}=false "
                            f"(w/o {name.upper()}) — train one with --set retrieval.{name}=false and build its index "
                            f"at index.path={path}")


class FeatureStore:
    """``store(paths) -> [B, m, Q, q]`` video features for a batch (zeros for ``None`` paths).

    Reads ``vision.feature_cache`` (filled by ``elmd features extract``; misses are encoded and
    added), or encodes on the fly when no cache is set. With ``in_memory`` every video's features
    are kept for the run after their first read, so :meth:`preload` makes the loop encoder-free.
    """

    def __init__(self, vision_cfg, encoder=None, in_memory: bool = True):
        from elmd.models.features import VideoFeatureSource

        if vision_cfg.feature_cache and not Path(vision_cfg.feature_cache).is_dir():
            raise ElmdError(f"vision.feature_cache '{vision_cfg.feature_cache}' does not exist — fill it with "
                            "`elmd features extract --data TRAIN.jsonl` (and the valid split), or set "
                            "vision.feature_cache='' to encode the videos on the fly")
        self.cfg, self.in_memory = vision_cfg, in_memory
        self.source = VideoFeatureSource(vision_cfg, encoder)
        self.memo: dict[str, torch.Tensor] = {}
        self._shape: tuple[int, ...] | None = None

    @property
    def stats(self):
        return self.source.stats

    def preload(self, paths, chunk: int = 64, progress: bool = False) -> None:
        """Read (or encode and cache) every distinct video of ``paths`` once, before training."""
        from tqdm import tqdm

        todo = [p for p in dict.fromkeys(p for p in paths if p) if p not in self.memo]
        for i in tqdm(range(0, len(todo), chunk), desc="video features", unit="chunk", disable=not progress or not todo):
            self._fetch(todo[i:i + chunk])

    def _fetch(self, paths: list[str]) -> dict[str, torch.Tensor]:
        feats = self.source(paths)
        self._shape = tuple(feats.shape[1:]) if len(paths) else self._shape
        got = dict(zip(paths, feats))
        if self.in_memory:
            self.memo.update(got)
        return got

    def __call__(self, paths: list[str | None]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(p for p in paths if p) if p not in self.memo]
        got = {**self.memo, **(self._fetch(missing) if missing else {})}
        shape = self._shape or (self.cfg.num_frames, self.cfg.num_query_tokens, self.q_dim)
        return torch.stack([got[p] if p else torch.zeros(shape) for p in paths]) if paths else torch.zeros(0, *shape)

    @property
    def q_dim(self) -> int:
        return self._shape[-1] if self._shape else self.source.encoder.q_dim


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


def video_tokens(cfg) -> int:
    """Video positions per prompt: m + Q, or 0 under ``vision.use_video=false``."""
    return num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens) if cfg.vision.use_video else 0


def encode_split(cfg, name: str, samples: list[Sample], demos: list[str], tokenizer, labels: LabelSet,
                 stage: str) -> Split:
    n_video = video_tokens(cfg)
    encoded = [encode_sample(s, d, tokenizer, labels, stage, n_video, cfg.prompt) for s, d in zip(samples, demos)]
    videos = [s.video if any(e["video_mask"]) else None for s, e in zip(samples, encoded)]
    return Split(name, samples, encoded, videos, demos)


def prepare_split(cfg, name: str, tokenizer, labels: LabelSet, stage: str, index=None, max_samples: int = 0) -> Split:
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


def fingerprints(cfg) -> dict:
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
