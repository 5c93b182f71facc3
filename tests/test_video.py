"""Frame sampling, decoding (decord and the OpenCV fallback), bad videos, CLIP normalisation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from elmd.errors import DataError
from elmd.models import video as V
from elmd.models.video import CLIP_MEAN, CLIP_STD, VideoError, load_frames, load_video, sample_frame_indices, to_model_input
from fixtures_video import decode_index


@pytest.mark.parametrize("n, m, expected", [
    (12, 4, [1, 4, 7, 10]),        # segments of 3 frames, middles 1.5 -> 1, 4.5 -> 4, ...
    (8, 8, list(range(8))),
    (10, 3, [1, 5, 8]),            # middles 1.67, 5, 8.33
    (100, 8, [6, 18, 31, 43, 56, 68, 81, 93]),
    (3, 8, [0, 0, 0, 1, 1, 2, 2, 2]),  # fewer frames than segments: frames repeat
    (1, 4, [0, 0, 0, 0]),
])
def test_sample_frame_indices(n, m, expected):
    assert sample_frame_indices(n, m) == expected


def test_sample_frame_indices_invariants():
    for n in range(1, 40):
        for m in range(1, 10):
            idx = sample_frame_indices(n, m)
            assert len(idx) == m and idx == sorted(idx) and 0 <= idx[0] and idx[-1] < n
            # frame k (shown during [k, k+1)) is on screen at the middle of segment i
            assert all(k <= (i + 0.5) * n / m < k + 1 for i, k in enumerate(idx))
            if n >= m:  # then every segment gets its own frame
                assert len(set(idx)) == m


def test_sample_frame_indices_rejects_empty():
    with pytest.raises(ValueError):
        sample_frame_indices(0, 8)
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0)


@pytest.mark.parametrize("backend", ["decord", "opencv"])
def test_load_frames_picks_segment_middles(video_dir, backend):
    frames = load_frames(video_dir / "v12.mp4", 4, 32, backend)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert decode_index(frames) == [1, 4, 7, 10]
    short = load_frames(video_dir / "v3.mp4", 5, 16, backend)
    assert decode_index(short) == sample_frame_indices(3, 5) == [0, 0, 1, 2, 2]


def test_decord_and_opencv_give_the_same_frames(video_dir):
    a = load_frames(video_dir / "other.mp4", 6, 48, "decord").astype(int)
    b = load_frames(video_dir / "other.mp4", 6, 48, "opencv").astype(int)
    assert decode_index(a) == decode_index(b)
    assert np.abs(a - b).max() <= 3  # same frames; only resize / colour-conversion rounding differs
    assert abs(int(a[0, 24, 24, 2]) - 20) <= 3  # RGB order (blue channel of other.mp4 is 20)


def test_auto_falls_back_to_opencv(video_dir, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("decord exploded")

    monkeypatch.setattr(V, "_load_decord", broken)
    frames = load_frames(video_dir / "v12.mp4", 4, 32, "auto")
    assert decode_index(frames) == [1, 4, 7, 10]
    with pytest.raises(VideoError, match="decord exploded"):
        load_frames(video_dir / "v12.mp4", 4, 32, "decord")


@pytest.mark.parametrize("name, problem", [
    ("missing.mp4", "not found"),
    ("empty.mp4", "empty"),
    ("corrupt.mp4", "cannot decode"),
])
def test_bad_videos_raise_naming_the_file(video_dir, name, problem):
    with pytest.raises(VideoError, match=problem) as e:
        load_frames(video_dir / name, 4, 32)
    assert isinstance(e.value, DataError)
    assert str(video_dir / name) in str(e.value) and "\n" not in str(e.value)


def test_zero_policy_warns_and_returns_none(video_dir, caplog):
    with caplog.at_level(logging.WARNING):
        assert load_video(video_dir / "corrupt.mp4", 4, 32, on_bad_video="zero") is None
    assert "corrupt.mp4" in caplog.text
    with pytest.raises(VideoError):
        load_video(video_dir / "corrupt.mp4", 4, 32, on_bad_video="error")
    assert load_video(video_dir / "v12.mp4", 4, 32, on_bad_video="zero").shape == (4, 32, 32, 3)


def test_to_model_input_clip_normalisation():
    frames = np.zeros((2, 4, 8, 8, 3), np.uint8)
    frames[..., 0] = 255
    x = to_model_input(frames)
    assert x.shape == (2, 4, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0], torch.full((8, 8), (1 - CLIP_MEAN[0]) / CLIP_STD[0]))
    assert torch.allclose(x[1, 3, 2], torch.full((8, 8), -CLIP_MEAN[2] / CLIP_STD[2]))


def test_to_model_input_resizes_when_needed():
    frames = np.full((3, 16, 16, 3), 128, np.uint8)
    x = to_model_input(frames, size=8)
    assert x.shape == (3, 3, 8, 8)
    assert torch.allclose(x[:, 1], torch.full((3, 8, 8), (128 / 255 - CLIP_MEAN[1]) / CLIP_STD[1]), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(frames.astype(np.float32))
