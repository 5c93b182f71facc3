"""Cache of frozen Q-Former features, one ``m x Q x q`` tensor per video (paper Sec. 3.4).

The ViT and Q-Former are frozen in both training stages, so each video is encoded once. An entry
is stored under ``CACHE_DIR/<key[:2]>/<key>.safetensors`` with

    key = sha256(video content sha256, encoder fingerprint, m, image size, sampling version)

so a changed video file, encoder or frame setting gives another key: a stale entry is never
read. Entries are written atomically (an interrupted extraction keeps every finished video), and
each entry's metadata repeats its key parts, which :meth:`FeatureCache.get` checks again.

:func:`video_features` is what training and generation call: cache hits are read, misses are
decoded, encoded in batches and stored; bad videos follow ``vision.on_bad_video``.
:func:`extract_features` fills a cache ahead of training, split across the ranks under ``torchrun``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from elmd.io import atomic_write_bytes, file_sha256
from elmd.models.video import SAMPLING_VERSION, load_video, to_model_input


@dataclass(frozen=True)
class FrameSettings:
    """Everything besides the video bytes and the encoder that changes the features."""

    num_frames: int
    image_size: int
    sampling_version: int = SAMPLING_VERSION

    @classmethod
    def from_config(cls, vision_cfg) -> "FrameSettings":
        return cls(vision_cfg.num_frames, vision_cfg.image_size)


@dataclass
class FeatureStats:
    """Counters of one :func:`video_features` / extraction run."""

    hits: int = 0
    misses: int = 0
    zeroed: int = 0
    no_video: int = 0
    bad_videos: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


_HASH_MEMO: dict[tuple, str] = {}


def content_hash(path: str | Path) -> str:
    """sha256 of the file's bytes, memoised per process by (path, size, mtime_ns, inode)."""
    st = os.stat(path)
    memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo_key not in _HASH_MEMO:
        _HASH_MEMO[memo_key] = file_sha256(path)
    return _HASH_MEMO[memo_key]


class FeatureCache:
    """One safetensors file per (video content, encoder, frame settings)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(video_sha: str, encoder_fp: str, settings: FrameSettings) -> str:
        parts = {"video": video_sha, "encoder": encoder_fp, **asdict(settings)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, video_path: str | Path, encoder_fp: str, settings: FrameSettings) -> torch.Tensor | None:
        """The cached ``[m, Q, q]`` features, or None (absent, unreadable or not matching)."""
        sha = content_hash(video_path)
        file = self.path_for(self.key(sha, encoder_fp, settings))
        if not file.exists():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
            feats = load_file(str(file))["features"]
        except Exception:  # truncated / foreign file: treat as a miss, it is rewritten by put()
            return None
        expected = {"video_sha256": sha, "encoder": encoder_fp, "num_frames": str(settings.num_frames),
                    "image_size": str(settings.image_size), "sampling_version": str(settings.sampling_version)}
        if any(meta.get(k) != v for k, v in expected.items()) or feats.dim() != 3 or feats.shape[0] != settings.num_frames:
            return None
        return feats

    def put(self, video_path: str | Path, encoder_fp: str, settings: FrameSettings, feats: torch.Tensor) -> Path:
        """Store ``feats`` ``[m, Q, q]`` atomically; returns the entry's path."""
        sha = content_hash(video_path)
        meta = {"video_sha256": sha, "encoder": encoder_fp, "num_frames": str(settings.num_frames),
                "image_size": str(settings.image_size), "sampling_version": str(settings.sampling_version),
                "video": str(video_path)}
        data = save({"features": feats.detach().float().contiguous().cpu()}, metadata=meta)
        return atomic_write_bytes(self.path_for(self.key(sha, encoder_fp, settings)), data)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.safetensors")) if self.root.exists() else 0


def check_vision_config(cfg) -> None:
    """Reject unknown choices of the video-related VisionConfig fields with a one-line error."""
    from elmd.errors import ConfigError
    from elmd.models.video import BACKENDS, BAD_VIDEO_POLICIES

    for name, allowed in (("backend", BACKENDS), ("on_bad_video", BAD_VIDEO_POLICIES), ("format", ("auto", "blip2", "visualglm"))):
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"vision.{name}={getattr(cfg, name)!r} — choose one of {', '.join(allowed)}")
    if cfg.num_frames < 1 or cfg.image_size < 1 or cfg.encode_batch_size < 1:
        raise ConfigError("vision.num_frames, vision.image_size and vision.encode_batch_size must be >= 1")


def video_features(paths: list[str | None], encoder, cache: FeatureCache | None, cfg,
                   stats: FeatureStats | None = None, videos_per_batch: int = 4, progress=None) -> torch.Tensor:
    """``[N, m, Q, q]`` features of ``paths`` (``cfg`` = VisionConfig): cached entries are read,
    the rest decoded, encoded ``videos_per_batch`` at a time and cached. ``None`` paths (turns
    without a video) and bad videos under ``on_bad_video=zero`` get all-zero features.
    ``encoder`` may be a :class:`~elmd.models.visual_encoder.LazyVisualEncoder` (loaded on the
    first miss only). ``progress`` (e.g. a tqdm bar) is advanced once per unique path."""
    check_vision_config(cfg)
    stats = stats if stats is not None else FeatureStats()
    settings = FrameSettings.from_config(cfg)
    fp, lead = encoder.fingerprint(), (settings.num_frames, encoder.num_query_tokens)
    found: dict[str, torch.Tensor | None] = {}  # None = zero features
    pending: list[tuple[str, object]] = []

    def flush():
        if pending:
            frames = torch.stack([to_model_input(f, settings.image_size) for _, f in pending])
            for (p, _), x in zip(pending, encoder.encode(frames, batch_size=cfg.encode_batch_size)):
                if cache is not None:
                    cache.put(p, fp, settings, x)
                found[p] = x
            if progress is not None:
                progress.update(len(pending))
            pending.clear()

    for p in dict.fromkeys(str(p) for p in paths if p):  # unique, in order
        hit = cache.get(p, fp, settings) if cache is not None and Path(p).is_file() else None
        if hit is not None and tuple(hit.shape[:2]) == lead:
            stats.hits += 1
            found[p] = hit
        elif (frames := load_video(p, settings.num_frames, settings.image_size, cfg.backend, cfg.on_bad_video)) is None:
            stats.zeroed += 1
            stats.bad_videos.append(p)
            found[p] = None
        else:
            stats.misses += 1
            pending.append((p, frames))
            if len(pending) >= videos_per_batch:
                flush()
            continue
        if progress is not None:
            progress.update(1)
    flush()
    stats.no_video += sum(1 for p in paths if not p)
    return _stack(paths, found, lead, encoder)


def _stack(paths, found: dict, lead: tuple[int, int], encoder) -> torch.Tensor:
    """Rows in the order of ``paths``; zeros for None paths and zeroed videos (q taken from any
    real row, so a lazy encoder is not loaded just to learn it)."""
    real = next((x for x in found.values() if x is not None), None)
    zero = torch.zeros(*lead, real.shape[-1] if real is not None else encoder.q_dim)
    rows = [found[str(p)] if p and found[str(p)] is not None else zero for p in paths]
    return torch.stack(rows) if rows else zero.new_zeros(0, *zero.shape)


def collect_video_paths(data_path: str | Path) -> list[str]:
    """Every distinct video of every turn in a dialogue JSONL (relative paths resolved)."""
    from elmd.data.jsonl import read_dialogues

    return list(dict.fromkeys(t.video for d in read_dialogues(data_path) for t in d.turns if t.video))


def _rank_world() -> tuple[int, int]:
    """(rank, world size) of the joined process group (torchrun), else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _gather(obj, world: int) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def merge_stats(parts: list[FeatureStats], order: list[str]) -> FeatureStats:
    """The counters of all ranks in one (bad videos in the order of ``order``)."""
    rank_of = {p: i for i, p in enumerate(order)}
    bad = sorted((p for s in parts for p in s.bad_videos), key=lambda p: rank_of.get(p, len(order)))
    return FeatureStats(sum(s.hits for s in parts), sum(s.misses for s in parts), sum(s.zeroed for s in parts),
                        sum(s.no_video for s in parts), bad)


def extract_features(data_path: str | Path, out_dir: str | Path, cfg, encoder=None, videos_per_batch: int = 4,
                     show_progress: bool = True) -> FeatureStats:
    """``elmd features extract``: fill ``out_dir`` with the features of every video in
    ``data_path`` (``cfg`` = VisionConfig). Entries already present are reused (the encoder is
    not even loaded when all are), so an interrupted run resumes; ``meta.json`` records the
    encoder fingerprint, settings and counts.

    Under ``torchrun`` (a joined process group) rank r of N encodes videos r, r + N, r + 2N, ...
    of the file's distinct videos into the same folder (one file per entry, written atomically, so
    ranks never write the same file); rank 0 writes ``meta.json`` once every rank is done. Every
    rank returns the counters summed over ranks."""
    from tqdm import tqdm

    from elmd.io import atomic_write_json
    from elmd.models.visual_encoder import LazyVisualEncoder

    check_vision_config(cfg)
    rank, world = _rank_world()
    paths = collect_video_paths(data_path)
    if not paths:
        from elmd.errors import DataError

        raise DataError(data_path, "no turn has a 'video' path", "add video paths, or train without video (vision.use_video=false)")
    mine = paths[rank::world]
    encoder = encoder if encoder is not None else LazyVisualEncoder(cfg)
    cache, stats = FeatureCache(out_dir), FeatureStats()
    meta = {"encoder_fingerprint": encoder.fingerprint(), "encoder_path": cfg.path or "tiny (random, seeded)",
            "settings": asdict(FrameSettings.from_config(cfg)), "data": str(data_path)}
    if rank == 0:
        atomic_write_json(cache.root / "meta.json", {**meta, "complete": False})
    _barrier(world)
    with tqdm(total=len(mine), desc="video features", unit="video", disable=not show_progress or rank > 0) as bar:
        feats = video_features(mine, encoder, cache, cfg, stats, videos_per_batch, progress=bar) if mine else None
    loaded = getattr(encoder, "_encoder", encoder)
    described = loaded.describe() if loaded is not None and hasattr(loaded, "describe") else None
    shape = list(feats.shape[1:]) if feats is not None else None
    parts = _gather((stats, shape, described), world)
    stats = merge_stats([p[0] for p in parts], paths)
    described = next((p[2] for p in parts if p[2] is not None), None)
    if described is not None:
        meta["encoder"] = described
    if rank == 0:
        atomic_write_json(cache.root / "meta.json", {**meta, "feature_shape": next(p[1] for p in parts if p[1]),
                                                    "complete": True, "videos": len(paths), **stats.as_dict()})
    _barrier(world)
    return stats


class VideoFeatureSource:
    """What training and generation call: ``source(paths) -> [N, m, Q, q]`` reading
    ``vision.feature_cache`` when it holds the key and encoding (and caching) otherwise; the
    encoder is loaded only on the first miss. Counters accumulate in ``self.stats``."""

    def __init__(self, cfg, encoder=None):
        from elmd.models.visual_encoder import LazyVisualEncoder

        check_vision_config(cfg)
        self.cfg, self.stats = cfg, FeatureStats()
        self.encoder = encoder if encoder is not None else LazyVisualEncoder(cfg)
        self.cache = FeatureCache(cfg.feature_cache) if cfg.feature_cache else None

    def __call__(self, paths: list[str | None]) -> torch.Tensor:
        return video_features(paths, self.encoder, self.cache, self.cfg, self.stats)
