"""Numba kernels of the detected-band lock (:class:`rtbwe.passband.DetectedBandLock`).

After the network has run, the lock keeps each window's input below its extension cutoff
and adds a gained, high-passed residual above it: ``out = input + g * high``. The FIR
high-pass runs as an FFT (NumPy, in the lock); these kernels do what follows it, which was a
dozen small NumPy calls and fancy-indexed copies per hop (issue 14; measured first as a
proposal in ``benchmarks/bench_lock_fft.py``, now ``bench_lock.py``):

* :func:`lock_gains`, each window's gain ``g``: the calibrated gain of its cutoff's bucket,
  times the new-content gate, the optional roll-off gate and the level cap;
* :func:`add_gained`, the write ``outputs[r] = inputs[r] + g * high``.

An optional factor is off when its array is empty (``np.empty(0)``), so the kernels keep one
signature whichever factors a lock uses. :mod:`rtbwe.kernels.reference` holds the NumPy twin
of each, written as the lock did it before (``tests/test_lock_kernels.py`` compares them).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def lock_gains(cutoff_hz: np.ndarray, added: np.ndarray, edges_hz: np.ndarray,
               table_gains: np.ndarray, excess_db: np.ndarray, gate_full_db: float,
               gate_off_db: float, rolloff_db: np.ndarray, rolloff_full_db: float,
               rolloff_off_db: float, below_power: np.ndarray, max_added_ratio: float,
               hann_sq: np.ndarray, gains: np.ndarray) -> None:
    """Per-window gains of the lock into ``gains[:rows]``, ``rows = len(cutoff_hz)``.

    cutoff_hz: (rows,) float64 extension cutoffs, all below Nyquist; added: (rows,
    window_samples) float32 or float64, the high-passed residual; edges_hz: (buckets,) the
    bucket edges of the gain table, ascending; table_gains: (buckets + 1,) the gain of each
    bucket, the last for cutoffs at or above every edge (``searchsorted(side="right")``).

    The optional factors, each skipped when its array is empty:

    * excess_db (rows,): gain 1 up to ``gate_full_db``, 0 from ``gate_off_db``, linear between;
    * rolloff_db (rows,): gain 1 down to ``rolloff_full_db``, 0 from ``rolloff_off_db``;
    * below_power (rows,): the added band's Hann-weighted power ``sum(added**2 * hann_sq)``
      is scaled to at most ``max_added_ratio * below_power``.
    """
    rows, window_samples = added.shape
    if cutoff_hz.shape[0] != rows or gains.shape[0] < rows \
            or table_gains.shape[0] != edges_hz.shape[0] + 1 \
            or hann_sq.shape[0] != window_samples:
        raise ValueError("lock_gains: buffers do not match rows x window_samples")
    gate = excess_db.shape[0] > 0
    rolloff = rolloff_db.shape[0] > 0
    cap = below_power.shape[0] > 0
    if (gate and excess_db.shape[0] < rows) or (rolloff and rolloff_db.shape[0] < rows) \
            or (cap and below_power.shape[0] < rows):
        raise ValueError("lock_gains: a gate or cap array is shorter than rows")
    for r in range(rows):
        j = 0
        while j < edges_hz.shape[0] and edges_hz[j] <= cutoff_hz[r]:
            j += 1
        g = table_gains[j]
        if gate:
            g *= min(max((gate_off_db - excess_db[r]) / (gate_off_db - gate_full_db), 0.0), 1.0)
        if rolloff:
            g *= min(max((rolloff_db[r] - rolloff_off_db) / (rolloff_full_db - rolloff_off_db),
                         0.0), 1.0)
        if cap:
            added_power = 0.0
            row = added[r]
            for i in range(window_samples):
                value = np.float64(row[i])  # a float32 square overflows on huge glitches
                added_power += value * value * hann_sq[i]
            g *= math.sqrt(min(1.0, max_added_ratio * below_power[r]
                               / max(added_power, 1e-30)))
        gains[r] = g


@njit(cache=True, nogil=True, error_model="numpy")
def add_gained(inputs: np.ndarray, outputs: np.ndarray, high: np.ndarray, gains: np.ndarray,
               rows_index: np.ndarray) -> None:
    """``outputs[rows_index[j]] = inputs[rows_index[j]] + float32(gains[j] * high[j])``.

    inputs, outputs: (>= rows, window_samples) float32; high: (len(rows_index),
    window_samples) float32; gains: (>= len(rows_index),) float64; rows_index int64.
    """
    count, window_samples = high.shape
    if rows_index.shape[0] != count or gains.shape[0] < count \
            or inputs.shape[1] != window_samples or outputs.shape[1] != window_samples:
        raise ValueError("add_gained: buffers do not match rows x window_samples")
    for j in range(count):
        r = rows_index[j]
        if r < 0 or r >= inputs.shape[0] or r >= outputs.shape[0]:
            raise ValueError("add_gained: a row index is outside the buffers")
        g = gains[j]
        source, dest, band = inputs[r], outputs[r], high[j]
        for i in range(window_samples):
            dest[i] = source[i] + np.float32(np.float64(band[i]) * g)
