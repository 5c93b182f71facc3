"""Measured quality of rendered avatars (issue 15 item 5): pure functions on arrays.

* :func:`yin_f0` — F0 track by YIN (de Cheveigné & Kawahara 2002, JASA 111(4): difference
  function, cumulative-mean normalisation, absolute threshold, parabolic interpolation);
  :func:`prosody` gives F0 mean (Hz), F0 range (semitones between the 5th and 95th percentile of
  the voiced frames) and the speaking rate (syllables per second of speech).
* :func:`frame_energy`, :func:`mouth_opening`, :func:`lipsync` — per-video-frame audio RMS, the
  rendered mouth opening measured from the pixels, their correlation and the audio/video offset
  (the lag of the best cross-correlation; > 0 means the video comes late); :func:`audio_delay_ms`
  the sample-exact shift of the muxed audio against the speech the frames were drawn from.
* :func:`ssim` — mean structural similarity (Wang et al. 2004, IEEE TIP 13(4): Gaussian window
  sigma 1.5, K1 = 0.01, K2 = 0.03) of two images, for the identity check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter


def yin_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 500.0, hop_s: float = 0.01,
           threshold: float = 0.15, silence_db: float = -40.0) -> np.ndarray:
    """F0 in Hz every ``hop_s`` seconds (0 = unvoiced or silent; silent = RMS ``silence_db``
    below the loudest frame)."""
    x = np.asarray(x, dtype=np.float64)
    tau_min, tau_max = max(2, int(sr / fmax)), int(np.ceil(sr / fmin))
    w, hop = tau_max, max(1, int(round(hop_s * sr)))
    if len(x) < w + tau_max + 1:
        return np.zeros(0)
    starts = np.arange(0, len(x) - w - tau_max, hop)
    frames = np.lib.stride_tricks.sliding_window_view(x, w + tau_max)[starts]  # [F, w + tau_max]
    n = 1 << int(np.ceil(np.log2(2 * (w + tau_max))))
    spec_a = np.fft.rfft(frames[:, :w], n)
    spec_b = np.fft.rfft(frames, n)
    r = np.fft.irfft(np.conj(spec_a) * spec_b, n)[:, :tau_max + 1]  # r[t, tau] = sum_j a_j b_{j+tau}
    sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    energy_tau = sq[:, w:w + tau_max + 1] - sq[:, :tau_max + 1]  # sum of b_{j+tau}^2, j < w
    d = np.maximum(energy_tau[:, :1] + energy_tau - 2 * r, 0.0)
    taus = np.arange(tau_max + 1)
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    rms = np.sqrt(energy_tau[:, 0] / w)
    loud = 20 * np.log10(np.maximum(rms, 1e-9) / max(rms.max(), 1e-9)) > silence_db
    f0 = np.zeros(len(frames))
    for i in np.flatnonzero(loud):
        below = np.flatnonzero(cmnd[i, tau_min:tau_max] < threshold)
        if not len(below):
            continue
        t = tau_min + below[0]
        while t + 1 < tau_max and cmnd[i, t + 1] < cmnd[i, t]:
            t += 1
        a, b, c = cmnd[i, t - 1], cmnd[i, t], cmnd[i, t + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) > 0 else 0.0
        f0[i] = sr / (t + shift)
    return f0


@dataclass
class ProsodyStats:
    f0_mean_hz: float
    """Mean F0 of the voiced frames."""
    f0_range_st: float
    """12 * log2(p95 / p5) of the voiced frames' F0 (semitones)."""
    rate_syl_s: float
    """Syllables per second between the first and last loud frame."""
    voiced_fraction: float
    """Voiced frames / loud frames."""


def prosody(x: np.ndarray, sr: int, n_syllables: int, silence_db: float = -35.0) -> ProsodyStats:
    """Prosody of one utterance (``n_syllables``: Chinese characters spoken)."""
    f0 = yin_f0(x, sr)
    voiced = f0[f0 > 0]
    e = frame_energy(x, sr, 100.0)
    loud = np.flatnonzero(20 * np.log10(np.maximum(e, 1e-9) / max(e.max(), 1e-9)) > silence_db)
    speech_s = (loud[-1] - loud[0] + 1) / 100.0 if len(loud) else 0.0
    if len(voiced) < 2:
        return ProsodyStats(0.0, 0.0, n_syllables / speech_s if speech_s else 0.0, 0.0)
    p5, p95 = np.percentile(voiced, [5, 95])
    return ProsodyStats(float(voiced.mean()), float(12 * np.log2(p95 / p5)), float(n_syllables / speech_s) if speech_s else 0.0,
                        float(len(voiced) / max(len(loud), 1)))


def frame_energy(x: np.ndarray, sr: int, fps: float, n_frames: int | None = None) -> np.ndarray:
    """RMS of the audio in each video frame's interval [k / fps, (k + 1) / fps)."""
    x = np.asarray(x, dtype=np.float64)
    n = n_frames if n_frames is not None else int(np.ceil(len(x) * fps / sr))
    edges = np.round(np.arange(n + 1) * sr / fps).astype(int)
    sq = np.concatenate([[0.0], np.cumsum(x ** 2)])
    lo, hi = np.minimum(edges[:-1], len(x)), np.minimum(edges[1:], len(x))
    return np.sqrt((sq[hi] - sq[lo]) / np.maximum(hi - lo, 1))


def mouth_opening(frames: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Fraction of the pixels inside ``box`` (x0, y0, x1, y1 in units of the frame) that show the
    open mouth of :func:`elmd.data.faces.draw_face` (its dark interior or its teeth), per frame."""
    frames = np.asarray(frames)
    h, w = frames.shape[1:3]
    x0, y0, x1, y1 = int(box[0] * w), int(box[1] * h), int(np.ceil(box[2] * w)), int(np.ceil(box[3] * h))
    crop = frames[:, max(0, y0):y1, max(0, x0):x1].astype(np.int16)
    r, g, b = crop[..., 0], crop[..., 1], crop[..., 2]
    interior = (r >= 35) & (r <= 115) & (g <= 50) & (b <= 60)
    teeth = (r >= 225) & (g >= 225) & (b >= 215)
    return (interior | teeth).reshape(len(frames), -1).mean(axis=1)


@dataclass
class LipSync:
    correlation: float
    """Pearson correlation of mouth opening and audio energy, frame by frame (lag 0)."""
    offset_ms: float
    """Lag of the best cross-correlation in milliseconds (> 0: the video comes late)."""
    best_correlation: float
    """Correlation at that lag."""


def lipsync(mouth: np.ndarray, energy: np.ndarray, fps: float, max_lag: int = 8) -> LipSync:
    """Correlation and A/V offset of a mouth-opening series and an audio-energy series."""
    n = min(len(mouth), len(energy))
    m, e = np.asarray(mouth[:n], float), np.asarray(energy[:n], float)
    corr = {lag: _pearson(m[lag:], e[:n - lag]) if lag >= 0 else _pearson(m[:n + lag], e[-lag:])
            for lag in range(-max_lag, max_lag + 1) if n - abs(lag) >= 3}
    best = max(corr, key=lambda k: (corr[k], -abs(k)))
    return LipSync(corr.get(0, 0.0), 1000.0 * best / fps, corr[best])


def audio_delay_ms(reference: np.ndarray, x: np.ndarray, sr: int, max_lag_s: float = 0.5) -> float:
    """Delay of ``x`` against ``reference`` (same rate ``sr``) in ms, from the peak of their
    cross-correlation within +-``max_lag_s`` (> 0: ``x`` comes late). Sample-exact: it tells
    whether muxing shifted the speech against the frames that were drawn from it."""
    from scipy.signal import correlate

    r, y = np.asarray(reference, np.float64), np.asarray(x, np.float64)
    c = correlate(y, r, mode="full", method="fft")
    lags = np.arange(-(len(r) - 1), len(y))
    keep = np.abs(lags) <= int(max_lag_s * sr)
    return float(1000.0 * lags[keep][np.argmax(c[keep])] / sr)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> float:
    """Mean SSIM of two images of the same shape (RGB images are compared in luma)."""
    a, b = _luma(a), _luma(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = lambda z: gaussian_filter(z, sigma, truncate=3.5)  # noqa: E731  (11 x 11 window)
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def _luma(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return img @ np.array([0.299, 0.587, 0.114]) if img.ndim == 3 else img
