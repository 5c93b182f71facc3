"""Pure measurements of the avatar head (elmd/heads/avatar/metrics.py), on hand-made signals."""

from __future__ import annotations

import numpy as np
import pytest

from elmd.heads.avatar.metrics import audio_delay_ms, frame_energy, lipsync, mouth_opening, prosody, ssim, yin_f0


@pytest.mark.parametrize("f0", [82.0, 150.0, 237.5, 410.0])
def test_yin_finds_the_f0_of_a_harmonic_tone(f0):
    sr = 16000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * f0 * t) + 0.6 * np.sin(2 * np.pi * 2 * f0 * t) + 0.3 * np.sin(2 * np.pi * 3 * f0 * t)
    track = yin_f0(x, sr)
    assert len(track) == pytest.approx(100 - 1 - 2 * (sr // 60 + 1) / 160, abs=2)  # 10 ms hop, one window at the end
    assert np.all(track > 0)
    assert np.median(track) == pytest.approx(f0, rel=0.002)


def test_yin_marks_silence_and_noise_unvoiced():
    sr = 16000
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(sr // 2), rng.normal(0, 0.3, sr // 2)])
    track = yin_f0(x, sr)
    assert (track[: len(track) // 2 - 10] == 0).all()  # silent half
    assert (track > 0).mean() < 0.1  # white noise has no period


def test_prosody_of_a_glide_pins_mean_range_and_rate():
    sr = 16000
    t = np.arange(2 * sr) / sr
    f = 100.0 * 2 ** (t / 2)  # one octave up over 2 s: 100 -> 200 Hz
    x = np.sin(2 * np.pi * np.cumsum(f) / sr)
    p = prosody(np.concatenate([np.zeros(sr // 2), x, np.zeros(sr // 2)]), sr, n_syllables=8)
    # voiced F0 between ~100 and ~200 Hz; p5..p95 spans 0.9 octave = 10.8 semitones
    assert p.f0_range_st == pytest.approx(10.8, abs=0.4)
    assert p.f0_mean_hz == pytest.approx(100 / np.log(2), rel=0.03)  # mean of 100 * 2**u over u in [0, 1]
    assert p.rate_syl_s == pytest.approx(4.0, rel=0.02)  # 8 syllables over the 2 s of sound


def test_frame_energy_is_the_rms_of_each_frame_interval():
    sr, fps = 1000, 10
    x = np.concatenate([np.full(100, 0.5), np.zeros(100), np.tile([1.0, -1.0], 50)])
    assert frame_energy(x, sr, fps) == pytest.approx([0.5, 0.0, 1.0])
    assert frame_energy(x, sr, fps, n_frames=4) == pytest.approx([0.5, 0.0, 1.0, 0.0])  # past the end: silent


def test_lipsync_finds_a_two_frame_delay():
    rng = np.random.default_rng(1)
    energy = rng.random(200)
    mouth = np.concatenate([[0.0, 0.0], energy[:-2]])  # video two frames late
    sync = lipsync(mouth, energy, fps=25)
    assert sync.offset_ms == 80.0
    assert sync.best_correlation == pytest.approx(1.0)
    assert sync.correlation < 0.3
    early = lipsync(energy[2:], energy[:-2], fps=25)  # video two frames early
    assert early.offset_ms == -80.0


def test_ssim_hand_values():
    a = np.full((32, 32), 100.0)
    b = np.full((32, 32), 50.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 50 + c1) / (100 ** 2 + 50 ** 2 + c1))  # flat images: luminance term only
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(48, 48, 3)).astype(np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 255 - img) < 0  # inverted structure: negative correlation term


def test_mouth_opening_grows_with_the_drawn_opening():
    from dataclasses import replace

    from elmd.data.faces import EXPRESSIONS, draw_face, face_regions, identity_for

    idt = identity_for("test/mouth")
    frames = np.stack([draw_face(replace(EXPRESSIONS["neutral"], mouth_open=o), idt, 128) for o in (0.0, 0.04, 0.07, 0.1)])
    m = mouth_opening(frames, face_regions(idt)["mouth"])
    assert m[0] == 0.0
    assert np.all(np.diff(m) > 0.01), m  # monotone in the opening


def test_audio_delay_is_sample_exact():
    sr = 16000
    rng = np.random.default_rng(3)
    ref = rng.normal(size=sr)
    late = np.concatenate([np.zeros(37), ref])[:sr]
    assert audio_delay_ms(ref, late, sr) == pytest.approx(1000 * 37 / sr)
    assert audio_delay_ms(late, ref, sr) == pytest.approx(-1000 * 37 / sr)
    assert audio_delay_ms(ref, ref, sr) == 0.0
