"""How far up the input's spectrum reaches: its effective bandwidth, from the long-term spectrum.

A band-limited input (a low-pass, a resampler, a codec) holds nothing but a floor above some
frequency; a full-band one does not. :func:`detect_bandwidth_hz` finds that frequency from the
long-term per-bin power spectrum that the :class:`~rtbwe.tracker.SpectrumTracker`
keeps, so streaming and offline see the same estimate at every window. The processor then
lets the network change only the band above it (:mod:`rtbwe.passband`), and leaves a
full-band input untouched.

The estimate, per row of long-term powers ``P[k]`` (``k``: rfft bins of one window)::

    L[k]    = 10 log10 of P smoothed over 5 bins (about 230 Hz at 48 kHz / 1024)
    cliff   = lowest k >= 1.5 kHz where every bin above k + 2 is >= CLIFF_DB below the mean
              level of the octave just below k (nothing but a floor above: a real band limit);
              no cliff -> full band (the Nyquist frequency)
    trend   = a line in (log f, dB) fitted to L over [0.3, 0.6] x cliff (the passband), its
              slope clamped to [-MAX_SLOPE_DB_PER_OCTAVE, 0] dB per octave
    edge    = highest bin below the cliff still within EDGE_DB of the trend

so a natural roll-off (a dark piano, a mellow voice) is never mistaken for a low-pass: its
level falls gradually, there is always a bin above within ``CLIFF_DB`` of the octave below.
``edge`` is the -6 dB point of zero-phase filters (the design cutoff of the Butterworth,
Bessel and Chebyshev-2 filters in :mod:`rtbwe.filters`, a few percent above that of the
rippling Chebyshev-1 and elliptic ones). A sharp step above the first cliff (a resampler or
codec under a quiet stretch of dark music) wins when it lies clearly higher. Accuracy, tested
in tests/test_bandwidth.py after 2 s of audio: within 5 % on steep filters of every family
(Chebyshev-1, elliptic, Butterworth 6-10, Chebyshev-2) at 3-20 kHz, resamplers and codecs;
gentle roll-offs (Bessel, Butterworth 4) are found too high on the test signal. On a real
recording errors reach 13 % either way (Bessel: up to +74 %). Measured errors,
also on a real recording: docs/results/bandwidth-detection.md.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

CLIFF_DB = 25.0          # everything above a band limit is at least this far below the band
EDGE_DB = 6.0            # the edge: the last bin within this of the passband's trend
MIN_CUTOFF_HZ = 1500.0   # no band limit is searched below this
SMOOTH_BINS = 5
GUARD_BINS = 2
REFERENCE_HZ = 1000.0    # the in-band level just below a candidate cliff: the mean over 1 kHz
FULL_BAND_FRACTION = 0.8  # a limit at or above 0.8 x Nyquist (19.2 kHz at 48 kHz): full band
MAX_SLOPE_DB_PER_OCTAVE = 24.0  # the passband trend's steepest fall (sixteenth session: 12 -> 24)
SHARP_DB = 30.0          # a sharp step: this many dB down ...
STEP_OVER_EDGE = 1.05     # a sharp step this far above the first edge is the limit
SHARP_BINS = 3           # ... within 2 x this many bins (about 280 Hz at 48 kHz / 1024)
MIN_POWER = 1e-12        # mean power per bin below this (about -120 dB): silence, unknown


@lru_cache(maxsize=16)
def _geometry(sample_rate: int, window_samples: int) -> tuple[np.ndarray, int, int]:
    freqs_hz = np.fft.rfftfreq(window_samples, 1.0 / sample_rate)
    bin_hz = freqs_hz[1]
    first = int(np.ceil(MIN_CUTOFF_HZ / bin_hz))
    reference_bins = max(2, int(round(REFERENCE_HZ / bin_hz)))
    return freqs_hz, first, reference_bins


@lru_cache(maxsize=16)
def _smooth_counts(bins: int) -> np.ndarray:
    """(bins,) how many bins each moving mean of :func:`smooth_db` covers (fewer at the
    edges)."""
    return np.convolve(np.ones(bins), np.ones(SMOOTH_BINS), "same")


def smooth_db(power: np.ndarray) -> np.ndarray:
    """(rows, bins) linear power -> dB, moving mean over SMOOTH_BINS bins (edges shrink).
    The moving sums are SMOOTH_BINS shifted slices added in place (one temporary, no per-row
    convolution: this runs in the streaming hop, issue 14)."""
    rows, bins = power.shape
    half = SMOOTH_BINS // 2
    padded = np.zeros((rows, bins + 2 * half))
    padded[:, half:half + bins] = power
    summed = padded[:, :bins].copy()
    for shift in range(1, SMOOTH_BINS):
        summed += padded[:, shift:shift + bins]
    summed /= _smooth_counts(bins)
    summed += 1e-30
    return 10.0 * np.log10(summed)


def detect_bandwidth_hz(power: np.ndarray, sample_rate: int, window_samples: int,
                        max_slope_db_per_octave: float | None = None) -> np.ndarray:
    """Effective bandwidth per row: long-term powers (rows, window_samples // 2 + 1) ->
    (rows,) float64 Hz. The Nyquist frequency means full band; NaN means silence (unknown).
    ``max_slope_db_per_octave``: the trend's clamp (None: MAX_SLOPE_DB_PER_OCTAVE)."""
    power = np.atleast_2d(np.asarray(power, dtype=np.float64))
    rows, bins = power.shape
    freqs_hz, first, ref_bins = _geometry(int(sample_rate), int(window_samples))
    if bins != freqs_hz.size:
        raise ValueError(f"expected {freqs_hz.size} bins for window_samples={window_samples}, "
                         f"got {bins}")
    nyquist_hz = sample_rate / 2.0
    out = np.full(rows, nyquist_hz)
    silent = power[:, 1:].mean(axis=1) < MIN_POWER
    out[silent] = np.nan
    if silent.all():
        return out
    level_db = smooth_db(power)
    # mean level over the octave just below k (at least ref_bins bins), for every k
    csum = np.concatenate([np.zeros((rows, 1)), np.cumsum(level_db, axis=1)], axis=1)
    k = np.arange(bins)
    lo = np.maximum(np.minimum(k // 2, k - ref_bins), 1)
    below_db = (csum[:, k] - csum[:, lo]) / np.maximum(k - lo, 1)
    # loudest bin above k + guard, for every k (suffix max)
    suffix = np.maximum.accumulate(level_db[:, ::-1], axis=1)[:, ::-1]
    above_db = np.full_like(level_db, -np.inf)
    above_db[:, :bins - GUARD_BINS - 1] = suffix[:, GUARD_BINS + 1:]
    cliff = (below_db - above_db >= CLIFF_DB) & (k >= first)[None, :]
    # a sharp step (a resampler, a codec, a steep filter): SHARP_DB down within 2 x
    # SHARP_BINS bins, and nothing above it louder than the step's foot
    step_db = np.full_like(level_db, -np.inf)
    step_db[:, SHARP_BINS:-SHARP_BINS] = level_db[:, :-2 * SHARP_BINS] - level_db[:, 2 * SHARP_BINS:]
    head_db = np.full_like(level_db, -np.inf)
    head_db[:, SHARP_BINS:] = level_db[:, :-SHARP_BINS]
    sharp = (step_db >= SHARP_DB) & (head_db - above_db >= SHARP_DB) & (k >= first)[None, :]
    for r in np.flatnonzero(~silent & cliff.any(axis=1)):
        first_cliff = int(np.argmax(cliff[r]))
        out[r] = _edge_hz(level_db[r], freqs_hz, first_cliff,
                          MAX_SLOPE_DB_PER_OCTAVE if max_slope_db_per_octave is None
                          else max_slope_db_per_octave)
        steps = np.flatnonzero(sharp[r, first_cliff:])
        if steps.size:  # a band limit above a quiet stretch (dark music): the step is it
            step_hz = _step_edge_hz(level_db[r], freqs_hz, first_cliff + int(steps[-1]))
            if step_hz > STEP_OVER_EDGE * out[r]:
                out[r] = step_hz
    return out


def _last_crossing_hz(level_db: np.ndarray, floor_db, freqs_hz: np.ndarray,
                      span: np.ndarray, fallback: int) -> float:
    """The last bin of ``span`` whose level is at or above ``floor_db(bins)`` (dB per bin),
    with the crossing to the next bin interpolated; ``fallback`` when no bin is."""
    inside = np.flatnonzero(level_db[span] >= floor_db(span))
    edge = int(span[inside[-1]]) if inside.size else fallback
    if inside.size and edge + 1 < len(freqs_hz):
        a = level_db[edge] - floor_db(np.array([edge]))[0]
        b = level_db[edge + 1] - floor_db(np.array([edge + 1]))[0]
        if a > 0 > b:
            return float(freqs_hz[edge] + (freqs_hz[1] - freqs_hz[0]) * a / (a - b))
    return float(freqs_hz[edge])


def _step_edge_hz(level_db: np.ndarray, freqs_hz: np.ndarray, step: int) -> float:
    """The edge of a sharp step at bin ``step``: the last bin before it within EDGE_DB of the
    passband level there (the 75th percentile of the 8 x SHARP_BINS bins before the step)."""
    top_db = float(np.percentile(level_db[max(step - 8 * SHARP_BINS, 1):step - SHARP_BINS + 1],
                                 75))
    span = np.arange(max(step - 8 * SHARP_BINS, 1), min(step + 2 * SHARP_BINS, len(freqs_hz)))
    return _last_crossing_hz(level_db, lambda bins: np.full(len(bins), top_db - EDGE_DB),
                             freqs_hz, span, step)


def _edge_hz(level_db: np.ndarray, freqs_hz: np.ndarray, cliff: int,
             max_slope_db_per_octave: float) -> float:
    """The passband edge below a cliff bin: the last bin within EDGE_DB of the passband's
    (log f, dB) trend line, fitted over [0.3, 0.6] x the cliff frequency, its slope clamped
    to [-max_slope_db_per_octave, 0] dB per octave."""
    lo, hi = max(1, int(0.3 * cliff)), max(int(0.6 * cliff), int(0.3 * cliff) + 3)
    log_f = np.log(freqs_hz[lo:hi])
    # the least-squares line (np.polyfit's, in closed form: a tenth of its cost)
    centred = log_f - log_f.mean()
    slope = float(centred @ (level_db[lo:hi] - level_db[lo:hi].mean()) / (centred @ centred))
    # a fit steeper than the clamp is a gentle filter's roll-off, a rising one a resonance:
    # clamp, and refit the level. Dark music falls faster than 12 dB per octave (validation
    # clips: 18-36 above 1 kHz), and a trend clamped at 12 put its edge 9-40 % below the
    # filter's, where the network then overwrote what the input still held; at 24 the steep
    # filters' accuracy is unchanged and gentle ones are found higher, the safe side
    # (sixteenth session; docs/results/bandwidth-detection.md)
    slope = float(np.clip(slope, -max_slope_db_per_octave / np.log(2.0), 0.0))
    intercept = float(np.mean(level_db[lo:hi] - slope * log_f))
    return _last_crossing_hz(
        level_db, lambda bins: intercept + slope * np.log(freqs_hz[bins]) - EDGE_DB, freqs_hz,
        np.arange(lo, cliff + 1), cliff)


def extension_cutoff_hz(bandwidth_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Where the network's band starts, per row: the detected bandwidth, or the Nyquist
    frequency (extend nothing) when the input is full band or still unknown (NaN)."""
    nyquist_hz = sample_rate / 2.0
    bw = np.asarray(bandwidth_hz, dtype=np.float64)
    full = ~np.isfinite(bw) | (bw >= FULL_BAND_FRACTION * nyquist_hz)
    return np.where(full, nyquist_hz, bw)
