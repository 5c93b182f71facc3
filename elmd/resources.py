"""What training and inference share of a run's inputs: the label set, the demonstration index
(paper Sec. 3.3) and the store of frozen video features (Sec. 3.4).

* :func:`labels_of` — the config's label set (``data.labels`` / ``data.label_names``);
* :func:`open_index` — the FAISS demonstration index at ``index.path`` (its own encoder; an index
  from a retriever trained with ERT / SSC is refused under the w/o ERT / w/o SSC ablations);
* :class:`FeatureStore` — the ViT + Q-Former features of a batch's videos, read from
  ``vision.feature_cache`` (misses encoded and added) or encoded on the fly;
* :func:`video_tokens` — video positions per prompt (m + Q, or 0 under ``vision.use_video=false``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import torch

from elmd.data.labels import LabelSet, label_set_from_config
from elmd.errors import ElmdError
from elmd.models.pooling import num_video_tokens

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig


def labels_of(cfg: ELMDConfig) -> LabelSet:
    return label_set_from_config(cfg.data.labels, cfg.data.label_names)


def open_index(cfg: ELMDConfig):
    """The demonstration index at ``index.path`` (its own encoder; another one is refused)."""
    from retrieval.index import DemonstrationIndex

    if not Path(cfg.index.path).is_dir():
        raise ElmdError(f"index.path '{cfg.index.path}' does not exist — build it with `elmd index build`, "
                        "or train without demonstrations (prompt.use_demonstration=false)")
    index = DemonstrationIndex.load(cfg.index.path, use_gpu=cfg.index.use_gpu, device=cfg.retrieval.device)
    check_index_variant(cfg, index.meta, cfg.index.path)
    return index


def check_index_variant(cfg: ELMDConfig, meta: dict, path) -> None:
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


def video_tokens(cfg: ELMDConfig) -> int:
    """Video positions per prompt: m + Q, or 0 under ``vision.use_video=false``."""
    return num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens) if cfg.vision.use_video else 0
