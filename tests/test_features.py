"""Feature cache: hit / miss / invalidation, bad-video policy, `elmd features extract` (resume, reuse)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from elmd.errors import ConfigError
from elmd.models.config import VisionConfig
from elmd.models.features import FeatureCache, FeatureStats, FrameSettings, extract_features, video_features
from elmd.models.video import VideoError, load_frames, to_model_input
from elmd.models.visual_encoder import VisualEncoder

CFG = VisionConfig(num_frames=3, image_size=224)


class CountingEncoder:
    """Wraps the tiny encoder, counting videos encoded; optionally fails after ``fail_after`` calls."""

    def __init__(self, enc, fail_after=None):
        self.enc, self.videos, self.calls, self.fail_after = enc, 0, 0, fail_after

    def __getattr__(self, name):
        return getattr(self.enc, name)

    def encode(self, frames, batch_size=32):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # simulated interruption
        self.calls += 1
        self.videos += frames.shape[0]
        return self.enc.encode(frames, batch_size)


def _direct(enc, path, cfg=CFG):
    frames = to_model_input(load_frames(path, cfg.num_frames, cfg.image_size))
    return enc.encode(frames[None])[0]


def test_miss_then_hit_gives_the_encoder_output(tmp_path, video_dir, tiny_visual_encoder):
    enc, cache = CountingEncoder(tiny_visual_encoder), FeatureCache(tmp_path / "cache")
    paths = [str(video_dir / "v12.mp4"), None, str(video_dir / "v12.mp4"), str(video_dir / "other.mp4")]
    stats = FeatureStats()
    feats = video_features(paths, enc, cache, CFG, stats)
    assert feats.shape == (4, 3, 32, 64)
    assert (stats.misses, stats.hits, stats.no_video, enc.videos) == (2, 0, 1, 2)
    assert torch.allclose(feats[0], _direct(tiny_visual_encoder, video_dir / "v12.mp4"), atol=1e-5)
    assert torch.equal(feats[0], feats[2]) and torch.count_nonzero(feats[1]) == 0
    assert len(cache) == 2

    again = FeatureStats()
    feats2 = video_features(paths, enc, cache, CFG, again)
    assert (again.hits, again.misses, enc.videos) == (2, 0, 2)  # nothing encoded the second time
    assert torch.equal(feats, feats2)


def test_changed_video_bytes_encoder_or_settings_miss(tmp_path, video_dir, tiny_visual_encoder):
    cache = FeatureCache(tmp_path / "cache")
    clip = tmp_path / "clip.mp4"
    shutil.copy(video_dir / "v12.mp4", clip)
    fp, settings = tiny_visual_encoder.fingerprint(), FrameSettings(3, 224)
    first = video_features([str(clip)], tiny_visual_encoder, cache, CFG)[0]
    assert torch.equal(cache.get(clip, fp, settings), first)

    assert cache.get(clip, VisualEncoder.tiny(seed=1).fingerprint(), settings) is None  # other encoder
    assert cache.get(clip, fp, FrameSettings(4, 224)) is None  # other m
    assert cache.get(clip, fp, FrameSettings(3, 224, sampling_version=99)) is None

    shutil.copy(video_dir / "other.mp4", clip)  # same path, new content
    assert cache.get(clip, fp, settings) is None
    stats = FeatureStats()
    second = video_features([str(clip)], tiny_visual_encoder, cache, CFG, stats)[0]
    assert stats.misses == 1 and not torch.allclose(first, second)
    assert torch.allclose(second, _direct(tiny_visual_encoder, video_dir / "other.mp4"), atol=1e-5)


def test_foreign_or_truncated_entries_are_never_used(tmp_path, video_dir, tiny_visual_encoder):
    from safetensors.torch import save

    cache, clip = FeatureCache(tmp_path / "cache"), video_dir / "v12.mp4"
    fp, settings = tiny_visual_encoder.fingerprint(), FrameSettings(3, 224)
    feats = video_features([str(clip)], tiny_visual_encoder, cache, CFG)[0]
    entry = next(cache.root.glob("??/*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated by a crash of some other tool
    assert cache.get(clip, fp, settings) is None
    entry.write_bytes(save({"features": torch.ones(3, 32, 64)}, metadata={"encoder": "someone-else"}))
    assert cache.get(clip, fp, settings) is None
    stats = FeatureStats()
    assert torch.allclose(video_features([str(clip)], tiny_visual_encoder, cache, CFG, stats)[0], feats, atol=1e-6)
    assert stats.misses == 1 and torch.equal(cache.get(clip, fp, settings), video_features([str(clip)], tiny_visual_encoder, cache, CFG)[0])


def test_bad_videos_error_or_zero(tmp_path, video_dir, tiny_visual_encoder):
    cache = FeatureCache(tmp_path / "cache")
    bad = [str(video_dir / "corrupt.mp4"), str(video_dir / "empty.mp4"), str(video_dir / "gone.mp4")]
    with pytest.raises(VideoError, match="corrupt.mp4"):
        video_features([str(video_dir / "v3.mp4"), bad[0]], tiny_visual_encoder, cache, CFG)
    stats = FeatureStats()
    zero_cfg = VisionConfig(num_frames=3, on_bad_video="zero")
    feats = video_features(bad + [str(video_dir / "v3.mp4")], tiny_visual_encoder, cache, zero_cfg, stats)
    assert stats.zeroed == 3 and stats.bad_videos == bad and stats.misses + stats.hits == 1
    assert torch.count_nonzero(feats[:3]) == 0 and torch.count_nonzero(feats[3]) > 0
    assert len(cache) == 1  # zero features are not cached
    with pytest.raises(ConfigError, match="on_bad_video"):
        video_features(bad, tiny_visual_encoder, cache, VisionConfig(on_bad_video="skip"))


def test_extract_is_resumable(tmp_path, video_dir, tiny_visual_encoder):
    out = tmp_path / "cache"
    data = video_dir / "dialogues.jsonl"  # 4 video turns: v12, v3, other, v12 again; 1 turn without
    with pytest.raises(KeyboardInterrupt):
        extract_features(data, out, CFG, CountingEncoder(tiny_visual_encoder, fail_after=1), videos_per_batch=1, show_progress=False)
    assert len(FeatureCache(out)) == 1 and json.loads((out / "meta.json").read_text())["complete"] is False
    enc = CountingEncoder(tiny_visual_encoder)
    stats = extract_features(data, out, CFG, enc, show_progress=False)
    assert (stats.hits, stats.misses, enc.videos) == (1, 2, 2)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and meta["encoder_fingerprint"] == tiny_visual_encoder.fingerprint()
    assert meta["settings"]["num_frames"] == 3 and meta["feature_shape"] == [3, 32, 64]


def test_cli_extract_fills_then_reuses_the_cache(tmp_path, video_dir):
    from elmd.cli.main import main

    out, runner = tmp_path / "cache", CliRunner()
    args = ["features", "extract", "--data", str(video_dir / "dialogues.jsonl"), "--out", str(out), "--set", "vision.num_frames=2"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "hits): 0" in first.output and "misses): 3" in first.output
    files = sorted(p.name for p in out.glob("??/*.safetensors"))
    mtimes = [p.stat().st_mtime_ns for p in sorted(out.glob("??/*.safetensors"))]
    second = runner.invoke(main, args)
    assert second.exit_code == 0 and "hits): 3" in second.output and "misses): 0" in second.output
    assert sorted(p.name for p in out.glob("??/*.safetensors")) == files
    assert [p.stat().st_mtime_ns for p in sorted(out.glob("??/*.safetensors"))] == mtimes  # nothing rewritten


def test_cli_extract_bad_video(tmp_path, video_dir):
    from elmd.cli.main import main

    data = tmp_path / "bad.jsonl"
    turn = {"speaker": "A", "text": "坏视频", "emotion": "sad", "video": str(video_dir / "corrupt.mp4")}
    data.write_text(json.dumps({"dialogue_id": "x", "turns": [turn]}, ensure_ascii=False) + "\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(main, ["features", "extract", "--data", str(data), "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "corrupt.mp4: cannot decode video" in res.output
    res = runner.invoke(main, ["features", "extract", "--data", str(data), "--out", str(tmp_path / "c"),
                               "--set", "vision.on_bad_video=zero"])
    assert res.exit_code == 0 and "zeroed (bad videos): 1" in res.output


def test_fully_cached_extract_does_not_load_the_encoder(tmp_path, video_dir, blip2_folder):
    from elmd.models.visual_encoder import LazyVisualEncoder

    cfg = VisionConfig(path=str(blip2_folder[0]), num_frames=2)
    first = LazyVisualEncoder(cfg)
    assert extract_features(video_dir / "dialogues.jsonl", tmp_path, cfg, first, show_progress=False).misses == 3
    assert first.loaded
    second = LazyVisualEncoder(cfg)
    stats = extract_features(video_dir / "dialogues.jsonl", tmp_path, cfg, second, show_progress=False)
    assert (stats.hits, stats.misses) == (3, 0) and not second.loaded
    assert json.loads((tmp_path / "meta.json").read_text())["feature_shape"] == [2, 32, 64]


def test_extract_needs_videos(tmp_path):
    from elmd.errors import DataError

    data = tmp_path / "novideo.jsonl"
    data.write_text(json.dumps({"dialogue_id": "x", "turns": [{"speaker": "A", "text": "你好", "emotion": None}]}) + "\n")
    with pytest.raises(DataError, match="no turn has a 'video'"):
        extract_features(data, tmp_path / "c", CFG, show_progress=False)


def test_feature_source_reads_cache_and_encodes_misses(tmp_path, video_dir, tiny_visual_encoder):
    from elmd.models.features import VideoFeatureSource

    cfg = VisionConfig(num_frames=3, feature_cache=str(tmp_path / "cache"))
    extract_features(video_dir / "dialogues.jsonl", cfg.feature_cache, cfg, show_progress=False)
    enc = CountingEncoder(tiny_visual_encoder)
    source = VideoFeatureSource(cfg, enc)
    clip = tmp_path / "new.mp4"
    shutil.copy(video_dir / "v3.mp4", clip)
    clip.write_bytes(clip.read_bytes() + b"\0")  # new content: not in the cache
    feats = source([str(video_dir / "v12.mp4"), str(clip), None])
    assert feats.shape == (3, 3, 32, 64) and (source.stats.hits, source.stats.misses, enc.videos) == (1, 1, 1)
    assert torch.allclose(feats[0], _direct(tiny_visual_encoder, video_dir / "v12.mp4"), atol=1e-5)
