"""The degradation filter bank of the paper's Table I, applied zero-phase.

Sulun & Davies low-pass the training input with ``scipy.signal.sosfiltfilt``; we do the
same, so the degraded signal is time-aligned with the reference. Because ``sosfiltfilt``
runs the filter twice, the magnitude response is squared: a Butterworth filter designed
with its -3 dB point at ``cutoff_hz`` is -6 dB there after filtering.

>>> y = lowpass(x, 48000, 6000, "cheby1", 6)      # x: (samples,) or (channels, samples)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

FAMILIES = ("cheby1", "bessel", "ellip", "butter", "cheby2")
CHEBY_RIPPLE_DB = 0.05
ELLIP_RIPPLE_DB = 0.05
ELLIP_STOP_DB = 20.0
CHEBY2_STOP_DB = 40.0


@dataclass(frozen=True)
class FilterSpec:
    """One low-pass filter: family and order (the cutoff is given at application time)."""

    family: str
    order: int

    def __str__(self) -> str:
        return f"{self.family}-{self.order}"


# Table I of the paper.
TRAIN_FILTERS = (FilterSpec("cheby1", 6), FilterSpec("cheby1", 8), FilterSpec("cheby1", 10),
                 FilterSpec("cheby1", 12), FilterSpec("bessel", 6), FilterSpec("bessel", 12),
                 FilterSpec("ellip", 6), FilterSpec("ellip", 12))
# Flat-passband filters with a knee (Chebyshev-2, not in the paper). Table I has none: its
# flat filters are sharp and ripple (cheby1, ellip) and its gentle one droops from 1 kHz
# (bessel). No Butterworth of any order is here, so the unseen test filter stays unseen.
FLAT_FILTERS = (FilterSpec("cheby2", 6), FilterSpec("cheby2", 8))
# Chebyshev-2 of three orders: flat passbands whose knees range from gentle (order 4) to
# sharp (order 8), for models that can tell filters apart (rtbwe.conditioning).
CHEBY2_FILTERS = (FilterSpec("cheby2", 4), FilterSpec("cheby2", 6), FilterSpec("cheby2", 8))
AUGMENT_SETS = {"table1": TRAIN_FILTERS, "table1+flat": TRAIN_FILTERS + FLAT_FILTERS,
                "table1+cheby2": TRAIN_FILTERS + CHEBY2_FILTERS}
SEEN_TEST_FILTER = FilterSpec("cheby1", 6)
UNSEEN_TEST_FILTER = FilterSpec("butter", 6)
TEST_FILTERS = {"seen": SEEN_TEST_FILTER, "unseen": UNSEEN_TEST_FILTER}


def parse_spec(text: str) -> FilterSpec:
    """``"butter-4"`` -> ``FilterSpec("butter", 4)``; a clear error for anything else."""
    family, _, order = text.strip().rpartition("-")
    if family not in FAMILIES or not order.isdigit() or int(order) < 1:
        raise ValueError(f"bad filter {text!r}: write FAMILY-ORDER, e.g. butter-4, with FAMILY "
                         f"one of {', '.join(FAMILIES)}")
    return FilterSpec(family, int(order))


@lru_cache(maxsize=128)
def design(sample_rate: int, cutoff_hz: float, family: str, order: int) -> np.ndarray:
    """Second-order sections (n_sections, 6) of a digital low-pass filter."""
    if family not in FAMILIES:
        raise ValueError(f"unknown filter family {family!r}; choose one of {', '.join(FAMILIES)}")
    if order < 1:
        raise ValueError(f"filter order must be >= 1, got {order}")
    nyquist_hz = sample_rate / 2
    if not 0 < cutoff_hz < nyquist_hz:
        raise ValueError(f"cutoff_hz={cutoff_hz} must be between 0 and the Nyquist frequency "
                         f"{nyquist_hz} Hz of sample_rate={sample_rate}")
    wn = cutoff_hz / nyquist_hz
    if family == "cheby1":
        return signal.cheby1(order, CHEBY_RIPPLE_DB, wn, btype="low", output="sos")
    if family == "bessel":
        return signal.bessel(order, wn, btype="low", norm="mag", output="sos")
    if family == "ellip":
        return signal.ellip(order, ELLIP_RIPPLE_DB, ELLIP_STOP_DB, wn, btype="low", output="sos")
    if family == "cheby2":
        return signal.cheby2(order, CHEBY2_STOP_DB, _cheby2_edge_hz(sample_rate, cutoff_hz, order),
                             btype="low", fs=sample_rate, output="sos")
    return signal.butter(order, wn, btype="low", output="sos")


def _cheby2_edge_hz(sample_rate: int, cutoff_hz: float, order: int) -> float:
    """Stopband edge that puts a Chebyshev-2 filter's -3 dB point at ``cutoff_hz``.

    scipy designs Chebyshev-2 from its stopband edge; every other family here is -3 dB at
    the cutoff (-6 dB after zero-phase filtering), so we map one to the other through the
    prototype's -3 dB frequency on the bilinear-warped axis.
    """
    eps = 1.0 / np.sqrt(10 ** (CHEBY2_STOP_DB / 10) - 1)
    ratio = np.cosh(np.arccosh(1.0 / eps) / order)
    warped = np.tan(np.pi * cutoff_hz / sample_rate) * ratio
    return float(min(sample_rate / np.pi * np.arctan(warped), 0.999 * sample_rate / 2))


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, family: str = "cheby1",
            order: int = 6) -> np.ndarray:
    """Zero-phase low-pass of ``audio`` (samples,) or (channels, samples); same shape, float32.

    Raises ``ValueError`` for a cutoff at or above Nyquist, an unknown family, a bad shape,
    or non-finite samples.
    """
    x = np.asarray(audio)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1], got dtype {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), x.shape)
        raise ValueError(f"audio has {int(bad.sum())} non-finite samples (first at index "
                         f"{tuple(int(i) for i in idx)}); clean it before filtering")
    sos = design(int(sample_rate), float(cutoff_hz), family, int(order))
    # padlen: scipy's default (3 * taps) is too short for high-order filters at low cutoffs;
    # padding by a few hundred samples keeps the edges clean. Cap at the signal length.
    padlen = min(x.shape[-1] - 1, 1024)
    y = signal.sosfiltfilt(sos, x.astype(np.float64), axis=-1, padlen=max(padlen, 0))
    return y.astype(np.float32)


def apply(audio: np.ndarray, sample_rate: int, cutoff_hz: float, spec: FilterSpec) -> np.ndarray:
    """:func:`lowpass` with a :class:`FilterSpec`."""
    return lowpass(audio, sample_rate, cutoff_hz, spec.family, spec.order)


def zero_phase_response_db(sample_rate: int, cutoff_hz: float, family: str, order: int,
                           freqs_hz: np.ndarray) -> np.ndarray:
    """Magnitude (dB) of the zero-phase (forward-backward) filter at ``freqs_hz``."""
    sos = design(int(sample_rate), float(cutoff_hz), family, int(order))
    _, h = signal.sosfreqz(sos, worN=np.asarray(freqs_hz, dtype=float), fs=sample_rate)
    return 2 * 20 * np.log10(np.maximum(np.abs(h), 1e-300))
