"""Framing, weighted overlap-add, spectrum-tracker and band-lock kernels for the streaming
processor (``rtbwe.kernels``).

Numba (``cache=True``) kernels in :mod:`.framing`, :mod:`.overlap`, :mod:`.spectrum` and
:mod:`.lock`, each
with a plain NumPy twin in :mod:`.reference`. Call :func:`warm_up` once before audio starts
so the first block does not pay for compilation or cache loading.
"""
from __future__ import annotations

import numpy as np

from .framing import (copy_sanitised, frame_signal, ingest_and_frame, pop_front,
                      replace_nonfinite, shift_left)
from .lock import add_gained, lock_gains
from .overlap import accumulate_and_emit, normalise, overlap_add, shift_accumulator
from .spectrum import accumulate_power, pooled_condition, window_contrast, window_for_fft

__all__ = ["frame_signal", "copy_sanitised", "replace_nonfinite", "shift_left", "overlap_add",
           "normalise", "shift_accumulator", "ingest_and_frame", "accumulate_and_emit",
           "pop_front", "window_for_fft", "accumulate_power", "window_contrast",
           "pooled_condition", "lock_gains", "add_gained", "synthesis_window", "warm_up"]

_warm = False


def synthesis_window(window_samples: int, hop_samples: int) -> np.ndarray:
    """Overlap-add weights (window_samples,) float32: a Hann window sampled half a sample off
    its zeros, so every weight is > 0 and the first and last samples still count.

    For ``hop_samples == window_samples / 2`` the weights of overlapping windows sum to exactly
    1; for other hops the processor divides by the summed weights, so any hop <= window works.
    """
    if not 0 < hop_samples <= window_samples:
        raise ValueError(f"need 0 < hop_samples <= window_samples, got hop {hop_samples}, "
                         f"window {window_samples}")
    n = np.arange(window_samples, dtype=np.float64)
    return (np.sin(np.pi * (n + 0.5) / window_samples) ** 2).astype(np.float32)


def warm_up() -> None:
    """Compile (or load from the Numba cache) every kernel for the types the processor uses:
    C-contiguous float32 arrays and int64 offsets."""
    global _warm
    if _warm:
        return
    signal = np.zeros((2, 16), np.float32)
    frames = np.zeros((4, 8), np.float32)
    window = np.ones(8, np.float32)
    acc = np.zeros((2, 16), np.float32)
    weight_sum = np.zeros(16, np.float32)
    frame_signal(signal, 0, 4, 2, frames)
    copy_sanitised(signal, acc, 0)
    replace_nonfinite(frames, 4)
    shift_left(signal, 4, 8)
    overlap_add(frames, 2, window, 4, acc, weight_sum, 0)
    normalise(acc, weight_sum, 0, 8, signal, 0)
    shift_accumulator(acc, weight_sum, 4, 8)
    inbuf = np.zeros((2, 16), np.float32)
    ingest_and_frame(np.zeros((2, 8), np.float32), inbuf, 4, 4, frames)
    acc[:] = 0.0
    weight_sum[:] = 0.0
    accumulate_and_emit(frames, 2, window, 4, acc, weight_sum, 1, signal, 0)
    pop_front(signal, 16, np.zeros((2, 3), np.float32))
    _warm_spectrum()
    _warm_lock()
    _warm = True


def _warm_spectrum() -> None:
    """The tracker's kernels at the types :class:`rtbwe.tracker.SpectrumTracker` passes:
    float32 frames, float64 state and outputs, complex128 spectra, read-only band geometry,
    float32 conditions."""
    rows, bins, bands = 2, 5, 3
    windowed = np.zeros((rows, 8), np.float64)
    window_for_fft(np.zeros((rows, 8), np.float32), rows, np.ones(8), 8.0, windowed)
    power, averaged = np.zeros((rows, bins)), np.zeros((rows, bins))
    accumulate_power(np.zeros((rows, bins), np.complex128), 1, rows, 0.5, np.zeros((1, bins)),
                     np.zeros(1), power, averaged)
    row_values = np.full(rows, 1.0)
    window_contrast(power, rows, row_values, row_values, 1.0, 2.0, 1.1, np.zeros(rows),
                    np.zeros(rows))
    band_of_bin, reference_bands = np.array([-1, 0, 1, 2, 2]), np.array([True, True, False])
    for geometry in (band_of_bin, reference_bands):  # the tracker's are cached, read-only
        geometry.flags.writeable = False
    pooled_condition(averaged, rows, band_of_bin, reference_bands, row_values, 2.0, -90.0, 20.0,
                     30.0, np.zeros(bands), np.zeros((rows, bands + 1), np.float32))


def _warm_lock() -> None:
    """The lock's kernels at the types :class:`rtbwe.passband.DetectedBandLock` passes in
    streaming: float64 per-row values, empty arrays for the factors a lock does not use, and
    the high band as a float32 view into the FFT's output, which NumPy flags as contiguous
    for one row (mono) and not for two (stereo)."""
    window = 8
    for rows in (1, 2):
        high = np.zeros((rows, window + 4), np.float32)[:, 2:2 + window]
        gains, unused = np.zeros(rows), np.empty(0)
        for values in (np.zeros(rows), unused):
            lock_gains(np.full(rows, 1000.0), high, np.array([500.0]), np.ones(2), values,
                       10.0, 20.0, values, -5.0, -9.0, values, 1.0, np.ones(window), gains)
        frames = np.zeros((rows, window), np.float32)
        add_gained(frames, frames.copy(), high, gains, np.arange(rows))
