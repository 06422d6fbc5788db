"""Numba kernels of the long-term spectrum tracker (:class:`rtbwe.tracker.SpectrumTracker`).

Per streaming hop the tracker windows the new frame, takes its rfft (NumPy, between the
first two kernels), adds its power to a decaying per-bin average, and from those powers makes
the lock's per-window contrast and the network's condition. These kernels do the steps
around the FFT in one call each, writing into buffers the tracker preallocated; before them,
each step was a handful of small NumPy calls and temporaries (issue 14). Row layout as the
framing kernel writes it: row ``c * num_frames + f`` is channel ``c``, frame ``f``.

:mod:`rtbwe.kernels.reference` holds a plain NumPy twin of each kernel, written like the
tracker's NumPy path before the kernels (``tests/test_kernels.py`` compares them).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def window_for_fft(frames: np.ndarray, rows: int, hann: np.ndarray, max_sample: float,
                   out: np.ndarray) -> None:
    """``out[r, i] = clip(frames[r, i], -max_sample, max_sample) * hann[i]`` for ``r < rows``.

    frames: (>= rows, window_samples) float32 (or float64); hann: (window_samples,) float64;
    out: (>= rows, window_samples) float64. NaN stays NaN, as with ``np.clip``.
    """
    window_samples = hann.shape[0]
    if rows > frames.shape[0] or rows > out.shape[0] or frames.shape[1] != window_samples \
            or out.shape[1] != window_samples:
        raise ValueError("window_for_fft: buffers do not match rows x window_samples")
    for r in range(rows):
        src, dst = frames[r], out[r]
        for i in range(window_samples):
            value = np.float64(src[i])
            if value > max_sample:
                value = max_sample
            elif value < -max_sample:
                value = -max_sample
            dst[i] = value * hann[i]


@njit(cache=True, nogil=True, error_model="numpy")
def accumulate_power(spectrum: np.ndarray, channels: int, num_frames: int, decay: float,
                     sums: np.ndarray, weights: np.ndarray, power: np.ndarray,
                     averaged: np.ndarray) -> None:
    """Each frame's bin powers into the decaying average, frame by frame in time order.

    spectrum: (>= channels * num_frames, bins) complex128 (rfft of the windowed frames);
    sums: (channels, bins) float64 and weights: (channels,) float64, the running state,
    updated in place; power, averaged: (>= channels * num_frames, bins) float64 outputs::

        power[r]    = |spectrum[r]|^2
        sums[c]     = sums[c] * decay + power[r]        (r = c * num_frames + f, f in order)
        weights[c]  = weights[c] * decay + 1
        averaged[r] = sums[c] / weights[c]
    """
    bins = sums.shape[1]
    rows = channels * num_frames
    if rows > spectrum.shape[0] or rows > power.shape[0] or rows > averaged.shape[0] \
            or spectrum.shape[1] != bins or power.shape[1] != bins \
            or averaged.shape[1] != bins or sums.shape[0] != channels \
            or weights.shape[0] != channels:
        raise ValueError("accumulate_power: buffers do not match channels x frames x bins")
    for c in range(channels):
        total = sums[c]
        for f in range(num_frames):
            r = c * num_frames + f
            src, bin_power, mean = spectrum[r], power[r], averaged[r]
            weight = weights[c] * decay + 1.0
            weights[c] = weight
            for k in range(bins):
                value = src[k]
                p = value.real * value.real + value.imag * value.imag
                bin_power[k] = p
                s = total[k] * decay + p
                total[k] = s
                mean[k] = s / weight


@njit(cache=True, nogil=True)
def _round_half_even(x: float) -> float:
    """``np.round`` of one float (ties to even)."""
    below = math.floor(x)
    rest = x - below
    if rest > 0.5 or (rest == 0.5 and below % 2.0 == 1.0):
        return below + 1.0
    return below


@njit(cache=True, nogil=True, error_model="numpy")
def window_contrast(power: np.ndarray, rows: int, cutoff_hz: np.ndarray,
                    reference_db: np.ndarray, bin_hz: float, nyquist_hz: float, guard: float,
                    excess_db: np.ndarray, below_power: np.ndarray) -> None:
    """Per row: how much of the window lies above its cutoff, against the long-term figure.

    power: (>= rows, bins) float64 bin powers; cutoff_hz, reference_db: (>= rows,) float64;
    excess_db, below_power: (>= rows,) float64 outputs. As
    :func:`rtbwe.tracker.band_ratio_db`: with ``k`` the cutoff's bin (rounded, in
    [2, bins - 1]) and ``k_above = min(ceil(guard * k), bins - 1)``::

        below_power[r] = sum power[r, k // 2 : k]
        excess_db[r]   = 10 log10((sum power[r, k_above + 1 :] + 1e-30) / (below + 1e-30))
                         - reference_db[r]

    and for a cutoff at or above ``nyquist_hz`` below_power 0 and excess ``-reference_db``.
    """
    bins = power.shape[1]
    if rows > power.shape[0] or rows > cutoff_hz.shape[0] or rows > reference_db.shape[0] \
            or rows > excess_db.shape[0] or rows > below_power.shape[0]:
        raise ValueError("window_contrast: a buffer has fewer than rows entries")
    for r in range(rows):
        if cutoff_hz[r] >= nyquist_hz:
            excess_db[r] = 0.0 - reference_db[r]
            below_power[r] = 0.0
            continue
        k = int(min(max(_round_half_even(cutoff_hz[r] / bin_hz), 2.0), bins - 1.0))
        k_above = min(int(math.ceil(k * guard)), bins - 1)
        row = power[r]
        above = 0.0
        for i in range(k_above + 1, bins):
            above += row[i]
        below = 0.0
        for i in range(k // 2, k):
            below += row[i]
        excess_db[r] = 10.0 * np.log10((above + 1e-30) / (below + 1e-30)) - reference_db[r]
        below_power[r] = below


@njit(cache=True, nogil=True, error_model="numpy")
def pooled_condition(averaged: np.ndarray, rows: int, band_of_bin: np.ndarray,
                     reference_bands: np.ndarray, cutoff_hz: np.ndarray, nyquist_hz: float,
                     floor_db: float, ceiling_db: float, scale_db: float,
                     band_power: np.ndarray, out: np.ndarray) -> None:
    """Long-term bin powers -> the network's condition, per row.

    averaged: (>= rows, bins) float64; band_of_bin: (bins,) int64, each bin's band or -1;
    reference_bands: (bands,) bool; cutoff_hz: (>= rows,) float64; band_power: (bands,)
    float64 scratch; out: (>= rows, bands [+ 1]) float32. As
    :func:`rtbwe.conditioning.to_condition` of the band sums, with ``ref`` the mean band
    power over ``reference_bands``::

        out[r, b]     = clip(10 log10((P_b + 1e-9 ref + 1e-30) / (ref + 1e-30)),
                             floor_db, ceiling_db) / scale_db
        out[r, bands] = cutoff_hz[r] / nyquist_hz                (only if out has the column)
    """
    bands = reference_bands.shape[0]
    bins = averaged.shape[1]
    if band_of_bin.shape[0] != bins or band_power.shape[0] != bands \
            or out.shape[1] < bands or out.shape[1] > bands + 1 or rows > out.shape[0] \
            or rows > averaged.shape[0] or rows > cutoff_hz.shape[0]:
        raise ValueError("pooled_condition: buffers do not match rows x bins x bands")
    tiny = 1e-30
    for r in range(rows):
        band_power[:] = 0.0
        row = averaged[r]
        for k in range(bins):
            b = band_of_bin[k]
            if b >= 0:
                band_power[b] += row[k]
        total, count = 0.0, 0
        for b in range(bands):
            if reference_bands[b]:
                total += band_power[b]
                count += 1
        reference = total / count
        for b in range(bands):
            db = 10.0 * np.log10((band_power[b] + 1e-9 * reference + tiny) / (reference + tiny))
            db = min(max(db, floor_db), ceiling_db)
            out[r, b] = np.float32(db / scale_db)
        if out.shape[1] > bands:
            out[r, bands] = np.float32(cutoff_hz[r] / nyquist_hz)
