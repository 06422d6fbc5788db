"""The input's long-term spectrum as a conditioning vector for the network.

A network that sees 21 ms of audio cannot tell which low-pass made its input: a Chebyshev-1
passband ripple of 0.1 dB or the knee of a Butterworth filter is invisible in one window of
music, and the right correction differs (docs/training.md). Seconds of input can tell them
apart. This module turns the input's power spectrum, averaged over the last seconds, into a
short vector that a conditioned model (``ARUNet(condition_bands=...)``) takes next to each
window.

The vector, for one channel at frame ``k`` (frames of the processor's window and hop)::

    P_k[b]  = sum over FFT bins in band b of |rfft(hann * frame_k)|^2     (bands: 1-11 kHz, 250 Hz)
    S_k[b]  = sum_{j <= k} d^(k-j) P_j[b] / sum_{j <= k} d^(k-j)            d = exp(-hop / (tau * fs))
    c_k[b]  = clip(10 log10(S_k[b] / mean(S_k[2-4 kHz bands])), -90, 20) / 30

so it is causal (streaming output still equals offline output), level-independent, and
starts from the first frame (the average of the frames so far). Digital silence gives 0.

That is layout 1 (40 values), which ``arunet-small-cond-6k`` was trained with. Layout 2 (48
values, models trained for every bandwidth) describes the whole band: 47 bands of 500 Hz from
0.5 to 24 kHz in dB relative to the 0.5-2.5 kHz level, plus where the network's band starts
(the detected bandwidth, :mod:`rtbwe.bandwidth`, over Nyquist; 1 for full band). The tracker
keeps every rfft bin's average (one float64 per bin and channel), so it serves both layouts
and the bandwidth detection from one spectrum.

Training draws the same vector from the clean audio's per-bin frame powers times the
degradation filter's power response (``training/clip_conditions.py``), which is how the
filtered signal's frame powers look, without filtering seconds of audio per segment.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


BAND_LOW_HZ = 1000.0
BAND_HIGH_HZ = 11000.0
BAND_WIDTH_HZ = 250.0
REFERENCE_BAND_HZ = (2000.0, 4000.0)
FLOOR_DB = -90.0
CEILING_DB = 20.0
SCALE_DB = 30.0
TIME_CONSTANT_S = 4.0
NUM_BANDS = int(round((BAND_HIGH_HZ - BAND_LOW_HZ) / BAND_WIDTH_HZ))  # 40


def condition_bands(model: object) -> int:
    """Length of the condition vector ``model`` takes next to its input; 0 for a plain model
    (any object: an ``nn.Module``, a wrapper or a loaded TorchScript module)."""
    return int(getattr(model, "condition_bands", 0) or 0)


def band_edges_hz() -> np.ndarray:
    """(NUM_BANDS + 1,) band edges in Hz."""
    return BAND_LOW_HZ + BAND_WIDTH_HZ * np.arange(NUM_BANDS + 1)


@lru_cache(maxsize=16)
def band_bins(sample_rate: int, window_samples: int) -> tuple[int, int, np.ndarray]:
    """FFT bins ``[first, last)`` that fall in some band, and each one's band index."""
    freqs_hz = np.fft.rfftfreq(window_samples, 1.0 / sample_rate)
    if freqs_hz[-1] < BAND_HIGH_HZ:
        raise ValueError(f"conditioning bands reach {BAND_HIGH_HZ:.0f} Hz, above the Nyquist "
                         f"frequency of sample_rate={sample_rate}")
    band = np.floor((freqs_hz - BAND_LOW_HZ) / BAND_WIDTH_HZ).astype(np.int64)
    inside = np.flatnonzero((band >= 0) & (band < NUM_BANDS))
    first, last = int(inside[0]), int(inside[-1]) + 1
    if np.bincount(band[first:last], minlength=NUM_BANDS).min() < 1:
        raise ValueError(f"window_samples={window_samples} is too short for "
                         f"{BAND_WIDTH_HZ:.0f} Hz conditioning bands at {sample_rate} Hz")
    return first, last, band[first:last]


def _reference_bands() -> np.ndarray:
    centres = band_edges_hz()[:-1] + BAND_WIDTH_HZ / 2
    return (centres > REFERENCE_BAND_HZ[0]) & (centres < REFERENCE_BAND_HZ[1])


REFERENCE_BANDS = _reference_bands()


@lru_cache(maxsize=16)
def _hann(window_samples: int) -> np.ndarray:
    return np.hanning(window_samples)


def bin_power(frames: np.ndarray, sample_rate: int) -> np.ndarray:
    """Hann-windowed power of the banded bins: frames (rows, window) -> (rows, bins) float64."""
    window_samples = frames.shape[-1]
    first, last, _ = band_bins(sample_rate, window_samples)
    spectrum = np.fft.rfft(frames * _hann(window_samples), axis=-1)[..., first:last]
    return spectrum.real ** 2 + spectrum.imag ** 2


def pool_bands(power: np.ndarray, sample_rate: int, window_samples: int) -> np.ndarray:
    """Per-bin powers (..., bins) -> per-band sums (..., NUM_BANDS)."""
    return power @ _pooling_matrix(sample_rate, window_samples)


@lru_cache(maxsize=16)
def _pooling_matrix(sample_rate: int, window_samples: int) -> np.ndarray:
    """(bins, NUM_BANDS) 0/1: which band each banded bin adds to."""
    _, _, band = band_bins(sample_rate, window_samples)
    return (band[:, None] == np.arange(NUM_BANDS)[None, :]).astype(np.float64)


def to_condition(band_power: np.ndarray, reference_bands: np.ndarray = REFERENCE_BANDS
                 ) -> np.ndarray:
    """Band powers (..., bands) -> the scaled, clipped dB vector (..., bands) float32, relative
    to the mean power of ``reference_bands`` (a mask; layout 1's 2-4 kHz by default)."""
    reference = band_power[..., reference_bands].mean(axis=-1, keepdims=True)
    tiny = 1e-30
    ratio = (band_power + 1e-9 * reference + tiny) / (reference + tiny)
    db = np.clip(10.0 * np.log10(ratio), FLOOR_DB, CEILING_DB)
    return (db / SCALE_DB).astype(np.float32)


def decay_per_frame(sample_rate: int, hop_samples: int,
                    time_constant_s: float = TIME_CONSTANT_S) -> float:
    return float(np.exp(-hop_samples / (time_constant_s * sample_rate)))


# Layout 2 (conditioned models with 48 condition values): the whole band, 0.5-24 kHz in
# 47 bands of 500 Hz, in dB relative to the 0.5-2.5 kHz level, plus one value: where the
# network's band starts (the detected bandwidth, rtbwe.bandwidth) as a fraction of Nyquist.
WIDE_LOW_HZ, WIDE_HIGH_HZ, WIDE_WIDTH_HZ = 500.0, 24000.0, 500.0
WIDE_REFERENCE_HZ = (500.0, 2500.0)
WIDE_NUM_BANDS = int(round((WIDE_HIGH_HZ - WIDE_LOW_HZ) / WIDE_WIDTH_HZ))  # 47
WIDE_BANDS = WIDE_NUM_BANDS + 1  # 48: the bands and the extension cutoff
LAYOUTS = (NUM_BANDS, WIDE_BANDS)
def check_layout(bands: int) -> None:
    if bands not in LAYOUTS and bands != 0:
        raise ValueError(f"the model takes {bands} condition values; this version of "
                         f"rtbwe.conditioning makes {NUM_BANDS} (layout 1) or {WIDE_BANDS} "
                         "(layout 2)")


@lru_cache(maxsize=16)
def _wide_pooling(sample_rate: int, window_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(bins, WIDE_NUM_BANDS) 0/1 pooling over all rfft bins, and the reference-band mask."""
    freqs_hz = np.fft.rfftfreq(window_samples, 1.0 / sample_rate)
    if freqs_hz[-1] < WIDE_HIGH_HZ - WIDE_WIDTH_HZ:
        raise ValueError(f"layout-2 conditioning needs sample_rate >= 48000, got {sample_rate}")
    band = np.floor((freqs_hz - WIDE_LOW_HZ) / WIDE_WIDTH_HZ).astype(np.int64)
    band[freqs_hz >= WIDE_HIGH_HZ] = WIDE_NUM_BANDS - 1  # Nyquist joins the top band
    pooling = (band[:, None] == np.arange(WIDE_NUM_BANDS)[None, :]).astype(np.float64)
    centres = WIDE_LOW_HZ + WIDE_WIDTH_HZ * (np.arange(WIDE_NUM_BANDS) + 0.5)
    reference = (centres > WIDE_REFERENCE_HZ[0]) & (centres < WIDE_REFERENCE_HZ[1])
    return pooling, reference


def full_bin_power(frames: np.ndarray) -> np.ndarray:
    """Hann-windowed power of every rfft bin: frames (rows, window) -> (rows, window//2 + 1)."""
    spectrum = np.fft.rfft(frames * _hann(frames.shape[-1]), axis=-1)
    return spectrum.real ** 2 + spectrum.imag ** 2


def conditions_from_power(power: np.ndarray, cutoff_hz: np.ndarray, bands: int,
                          sample_rate: int, window_samples: int) -> np.ndarray:
    """Long-term powers of all bins (rows, bins) and each row's extension cutoff (rows,) Hz
    -> conditions (rows, bands) float32 in layout ``bands`` (40 or 48)."""
    if bands == NUM_BANDS:
        first, last, _ = band_bins(sample_rate, window_samples)
        return to_condition(pool_bands(power[:, first:last], sample_rate, window_samples))
    check_layout(bands)
    pooling, reference = _wide_pooling(sample_rate, window_samples)
    out = np.empty((power.shape[0], bands), np.float32)
    out[:, :-1] = to_condition(power @ pooling, reference)
    out[:, -1] = np.asarray(cutoff_hz) / (sample_rate / 2.0)
    return out


@lru_cache(maxsize=16)
def condition_geometry(sample_rate: int, window_samples: int, bands: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Layout ``bands`` (40 or 48) as the pooling kernel takes it: each rfft bin's band
    (window_samples // 2 + 1,) int64 (-1: in no band) and the reference-band mask (bands
    without the cutoff value,) bool (read-only, cached)."""
    bins = window_samples // 2 + 1
    if bands == NUM_BANDS:
        first, last, band = band_bins(sample_rate, window_samples)
        band_of_bin = np.full(bins, -1, np.int64)
        band_of_bin[first:last] = band
        reference = REFERENCE_BANDS.copy()
    else:
        check_layout(bands)
        pooling, reference = _wide_pooling(sample_rate, window_samples)
        band_of_bin = np.where(pooling.any(axis=1), pooling.argmax(axis=1), -1).astype(np.int64)
    for array in (band_of_bin, reference):
        array.flags.writeable = False
    return band_of_bin, reference


# moved to rtbwe.tracker (twenty-first session); still importable from here
_MOVED = ("SpectrumTracker", "DETECT_EVERY_FRAMES", "MIN_HISTORY_S", "min_history_frames",
          "last_detection_frame", "CONTRAST_GUARD", "octave_rolloff_db", "octave_level_db",
          "band_ratio_db", "MAX_SAMPLE", "START_FADE_SAMPLES")


def __getattr__(name: str):
    if name in _MOVED:
        from . import tracker

        return getattr(tracker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
