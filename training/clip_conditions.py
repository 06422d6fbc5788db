"""Conditions of whole clips, offline: what the trainer and validation give a conditioned model.

The streaming processor draws each window's condition from the
:class:`~rtbwe.tracker.SpectrumTracker`'s long-term spectrum. Training draws the same
vector from a clean clip's per-bin frame powers (:func:`signal_bin_power`, computed once per
track) times a degradation filter's power response (:func:`filtered_band_power`), which is
how the filtered signal's frame powers look, without filtering seconds of audio per segment;
validation uses one condition per clip (:func:`clip_condition`). Moved here from
``rtbwe.conditioning`` in the tenth session: only training uses them.
"""
from __future__ import annotations

import numpy as np

from rtbwe.conditioning import band_bins, bin_power, pool_bands, to_condition


def signal_bin_power(audio: np.ndarray, sample_rate: int, window_samples: int = 1024,
                     hop_samples: int = 512, chunk_frames: int = 4096) -> np.ndarray:
    """Banded bin powers of every frame of a whole signal: (samples,) -> (frames, bins)
    float32 (frame k = samples [k * hop, k * hop + window); a short signal is zero-padded
    to one frame). Computed ``chunk_frames`` frames at a time to bound memory."""
    audio = np.asarray(audio)
    if audio.shape[-1] < window_samples:
        audio = np.pad(audio, (0, window_samples - audio.shape[-1]))
    frames = np.lib.stride_tricks.sliding_window_view(audio, window_samples)[::hop_samples]
    out = np.empty((len(frames), len(bin_frequencies_hz(sample_rate, window_samples))),
                   np.float32)
    for i in range(0, len(frames), chunk_frames):
        out[i:i + chunk_frames] = bin_power(frames[i:i + chunk_frames], sample_rate)
    return out


def clip_condition(audio: np.ndarray, sample_rate: int, window_samples: int = 1024,
                   hop_samples: int = 512) -> np.ndarray:
    """One condition for a whole clip (samples,) -> (NUM_BANDS,): the plain mean of its
    frame powers (the offline ideal, used for whole-clip inference and validation)."""
    power = signal_bin_power(audio, sample_rate, window_samples, hop_samples)
    mean = power.mean(axis=0, dtype=np.float64)
    return to_condition(pool_bands(mean, sample_rate, window_samples))


def filtered_band_power(clean_bin_power: np.ndarray, gain: np.ndarray, sample_rate: int,
                        window_samples: int) -> np.ndarray:
    """Band powers of a filtered signal from the clean one's bin powers (..., bins) and the
    filter's power gain per bin (bins,) (the zero-phase response squared)."""
    return pool_bands(clean_bin_power * gain, sample_rate, window_samples)


def bin_frequencies_hz(sample_rate: int, window_samples: int) -> np.ndarray:
    """(bins,) centre frequencies of the banded bins."""
    first, last, _ = band_bins(sample_rate, window_samples)
    return np.fft.rfftfreq(window_samples, 1.0 / sample_rate)[first:last]
