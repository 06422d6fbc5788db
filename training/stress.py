"""Never worse, beyond the issue's matrix: degradations real inputs have that the matrix lacks.

``rtbwe-train eval MODEL --matrix --stress`` runs these rows through the same streaming
``BandwidthExtender`` path and the same per-row measures as :mod:`rtbwe.training.matrix`
(pooled ΔSNR against the clean clip, the fraction of clips below -0.5 dB, LSD, LSD-HF).
The matrix holds zero-phase filters, soxr HQ, LAME CBR files and GSM, all at the corpus's
level (about -20 dBFS RMS). Real inputs also come:

* through causal filters (an analogue tone control, a live EQ: phase shifted near the cutoff,
  the signal delayed), and gentler or other-shaped low-passes (Butterworth 2, Bessel,
  elliptic, Chebyshev-2);
* low-passed at cutoffs between the matrix's (5, 7 and 10 kHz);
* with noise added after the band limit (tape hiss, a noisy preamp) at -60 and -40 dB under
  the signal;
* quiet (a recording 40 or 60 dB under the corpus's level; the row scales the input down and
  the output back up, so ΔSNR is comparable with the loud row);
* with a treble cut that is not a band limit (a high shelf: every frequency is still there);
* through pedalboard's resamplers (linear interpolation with its aliases, windowed sinc) and
  soxr's low quality, and pedalboard's MP3 encoder at VBR qualities (what ``draw`` trains on);
* hard-clipped (full band, distorted).

A row's band limit decides which clips serve it (:func:`rtbwe.training.matrix.usable`): a
clip must hold what the row removes; the clipped row takes clips whose own bandwidth
reaches 1.05 x FULL_BAND_LIMIT_HZ, and the quiet full-band row is scored as the matrix's
full-band row (output against input, at least 40 dB).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import signal

from rtbwe import filters

from .degrade import Degradation

FULL_BAND_LIMIT_HZ = 19000.0  # rows with no band limit: clips that hold up to this


@dataclass(frozen=True)
class StressRow:
    """One row: ``degrade`` (samples,) float32 -> (samples,) at 48 kHz, time-aligned as the
    degradation leaves it; ``limit_hz`` what it removes (for :func:`usable`); ``level_db``:
    the input reaches the processor this far down (0: as degraded), the output is raised back."""

    degrade: Callable[[np.ndarray, int], np.ndarray] | None  # None: full band, nothing removed
    limit_hz: float
    level_db: float = 0.0

    def apply(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return np.asarray(self.degrade(np.asarray(audio, np.float32), sample_rate), np.float32)

    def band_limit_hz(self) -> float:
        return self.limit_hz


def _causal(family: str, order: int, cutoff_hz: float):
    def degrade(x: np.ndarray, sample_rate: int) -> np.ndarray:
        return signal.sosfilt(filters.design(sample_rate, cutoff_hz, family, order), x)
    return degrade


def _hiss(inner, below_db: float):
    """White noise ``below_db`` under the degraded clip's RMS, added after the band limit
    (seeded by the clip's length: the same noise on every run)."""
    def degrade(x: np.ndarray, sample_rate: int) -> np.ndarray:
        y = inner(x, sample_rate)
        noise = np.random.default_rng(len(y)).standard_normal(len(y))
        return y + noise * np.sqrt(np.mean(y ** 2)) * 10 ** (below_db / 20)
    return degrade


def _shelf(cutoff_hz: float, gain_db: float):
    def degrade(x: np.ndarray, sample_rate: int) -> np.ndarray:
        from pedalboard import HighShelfFilter

        shelf = HighShelfFilter(cutoff_frequency_hz=cutoff_hz, gain_db=gain_db)
        return shelf(x[None], float(sample_rate))[0]
    return degrade


def _clipped(fraction_of_peak: float):
    def degrade(x: np.ndarray, sample_rate: int) -> np.ndarray:
        top = fraction_of_peak * float(np.abs(x).max())
        return np.clip(x, -top, top)
    return degrade


def _row(degradation: Degradation, level_db: float = 0.0) -> StressRow:
    """A training degradation as a row: its own ``apply`` and band limit."""
    return StressRow(degradation.apply, degradation.band_limit_hz(), level_db)


def _filter(family: str, order: int, cutoff_hz: float) -> Degradation:
    return Degradation("filter", filters.FilterSpec(family, order), cutoff_hz)


def stress_rows() -> dict[str, StressRow]:
    """The rows, in table order."""
    butter8 = _filter("butter", 6, 8000.0)
    rows = {
        "butter-6 causal 4 kHz": StressRow(_causal("butter", 6, 4000.0), 4000.0),
        "butter-6 causal 8 kHz": StressRow(_causal("butter", 6, 8000.0), 8000.0),
        "cheby1-6 causal 8 kHz": StressRow(_causal("cheby1", 6, 8000.0), 8000.0),
        "butter-2 4 kHz": _row(_filter("butter", 2, 4000.0)),
        "butter-2 8 kHz": _row(_filter("butter", 2, 8000.0)),
        "bessel-6 8 kHz": _row(_filter("bessel", 6, 8000.0)),
        "ellip-6 8 kHz": _row(_filter("ellip", 6, 8000.0)),
        "cheby2-6 8 kHz": _row(_filter("cheby2", 6, 8000.0)),
        # cutoffs between the matrix's (the scaler's gain and the boost's rules change at 5
        # and 10 kHz; the matrix's rows sit at 4, 6, 8, 11 kHz)
        "butter-6 5 kHz": _row(_filter("butter", 6, 5000.0)),
        "cheby1-6 5 kHz": _row(_filter("cheby1", 6, 5000.0)),
        "butter-6 7 kHz": _row(_filter("butter", 6, 7000.0)),
        "butter-6 10 kHz": _row(_filter("butter", 6, 10000.0)),
        "butter-6 8 kHz + hiss 60 dB down": StressRow(_hiss(butter8.apply, -60.0), 8000.0),
        "butter-6 8 kHz + hiss 40 dB down": StressRow(_hiss(butter8.apply, -40.0), 8000.0),
        "butter-6 4 kHz, 40 dB down": _row(_filter("butter", 6, 4000.0), -40.0),
        "butter-6 8 kHz, 40 dB down": _row(butter8, -40.0),
        "butter-6 8 kHz, 60 dB down": _row(butter8, -60.0),
        "resampled via 16 kHz, 40 dB down": _row(Degradation(
            "resample", rate_hz=16000, resampler="soxr-HQ"), -40.0),
        "full band, 40 dB down": StressRow(None, FULL_BAND_LIMIT_HZ, -40.0),
        "high shelf -12 dB at 6 kHz": StressRow(_shelf(6000.0, -12.0), 6000.0),
        "high shelf -24 dB at 4 kHz": StressRow(_shelf(4000.0, -24.0), 4000.0),
        "pedalboard Linear via 16 kHz": _row(Degradation(
            "resample", rate_hz=16000, resampler="pedalboard-Linear")),
        "pedalboard WindowedSinc via 22.05 kHz": _row(Degradation(
            "resample", rate_hz=22050, resampler="pedalboard-WindowedSinc")),
        "soxr LQ via 16 kHz": _row(Degradation("resample", rate_hz=16000, resampler="soxr-LQ")),
    }
    for quality in (9.0, 4.0):
        rows[f"mp3 VBR V{quality:g} (pedalboard)"] = _row(Degradation("mp3", vbr_quality=quality))
    rows["clipped at 30 % of peak"] = StressRow(_clipped(0.3), FULL_BAND_LIMIT_HZ)
    return rows


def level_runner(run, level_db: float):
    """``run`` (one clip -> (output, bandwidth)) fed the clip ``level_db`` down, its output
    raised back: ΔSNR as at the clip's own level, the processor seeing a quiet input."""
    if level_db == 0.0:
        return run
    scale = 10.0 ** (level_db / 20.0)

    def quiet(x: np.ndarray):
        out, bandwidth_hz = run((x * scale).astype(np.float32))
        return out / scale, bandwidth_hz
    return quiet
