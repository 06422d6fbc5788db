"""A filter's skirt, fitted to the shapes low-pass filters have: a deeper boost where it fits.

The trend rule (:mod:`rtbwe.skirt`) boosts a gentle filter's skirt by how far the input lies
below its own passband's trend, minus a 10 dB margin, by at most 16 dB: music's own roll-off
at the top of its passband is not the filter's, and an over-boost costs more than an
under-boost. The margin gives up the first 10 dB of every skirt, which is where most of its
energy lies, and the cap the rest: the exact inverse of a Butterworth 6 at 8 kHz capped at
30 dB would add +2.05 dB on the validation split, the trend rule alone adds +0.4
(docs/training.md, twelfth session).

This estimate keeps the trend rule's decision (it boosts only rows the trend rule boosts:
its cliff, width, depth and floor tests) and its boost as a floor, and asks one more
question: does the skirt's shape, the gap below the trend from ``FIT_FROM`` x the detected
bandwidth ``e`` down to ``FIT_FLOOR_GAP_DB``, match a low-pass filter's? The candidates
(TEMPLATE_FILTERS: Butterworth 4-12, Chebyshev-1 4-12, Bessel, elliptic, Chebyshev-2, the
zero-phase responses of :mod:`rtbwe.filters`, each as a function of f / fc) are tried at
cutoffs ``fc`` of 0.75-1.35 x ``e``. Where the best one's RMS error is under
MAX_FIT_RMS_DB, the row is boosted by that filter's inverse, taken at a cutoff FC_SHIFT above
the fitted one (a steep skirt's inverse is sensitive to its cutoff: 3 % is about 4 dB on a
zero-phase Butterworth 6's asymptote), from BOOST_FROM x ``e`` to where the skirt reaches
its floor, by at most MAX_FIT_BOOST_DB. Only at bandwidths from FIT_FROM_HZ: below it, music
whose own spectrum falls just above the cutoff fitted a filter 3-18 % below the true one on
the validation split and was boosted by up to 9 dB too much. Nor on the windows the cutoff
scaler (:mod:`rtbwe.rescale`) runs (FIT_SCALED_WINDOWS): its network restores the skirt
itself, and the fit's boost on top of it doubled the band on some clips; those keep the trend
rule's boost. The templates are designed at 6 kHz: a digital filter's shape in f / fc moves a
little with its cutoff (the bilinear transform), which the 2 dB RMS limit absorbs.

A card names it as its ``skirt_model``: ``"template-fit"`` (:data:`TEMPLATE_FIT`; no weights
file). Its cost is one vectorised fit per detection (every 8th hop), not per hop.
Chosen on the validation split (docs/training.md, twenty-first session).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import filters
from .skirt import _grid, skirt_gain_and_levels, trend_gap_db

TEMPLATE_FIT = "template-fit"  # a card's skirt_model naming this estimate
TEMPLATE_FILTERS = (tuple(("butter", n) for n in (4, 5, 6, 8, 10, 12))
                    + tuple(("cheby1", n) for n in (4, 6, 8, 10, 12))
                    + (("bessel", 6), ("bessel", 12), ("ellip", 6), ("ellip", 12))
                    + tuple(("cheby2", n) for n in (4, 6, 8)))
FIT_FROM_HZ = 5000.0        # rows detected below this keep the trend rule's boost
FIT_FROM = 0.8              # the fit starts this x the bandwidth up
BOOST_FROM = 0.9            # and the fitted boost this x the bandwidth up
FIT_FLOOR_GAP_DB = 50.0     # the fit (and the boost) end where the gap first exceeds this
MIN_FIT_BINS = 6            # a skirt narrower than this many bins is not fitted
MAX_FIT_RMS_DB = 2.0        # a fit this close, RMS over the skirt, is taken
MAX_FIT_BOOST_DB = 30.0
FC_SHIFT = 0.03             # the boost's filter sits this fraction above the fitted cutoff
# not on the windows the cutoff scaler runs (rtbwe.rescale): its network restores the skirt
# too, and with a boost this deep on top (validation, Butterworth / Chebyshev-1 6 and 8 kHz
# from 0 and 6 s) 7 clip-rows lost 0.4-3.3 dB against the trend rule (4 at a cutoff 5 % above
# the fit, 3 at 8 %, none with the scaled windows left to the trend rule)
FIT_SCALED_WINDOWS = False
CUTOFF_RATIOS = np.exp(np.linspace(np.log(0.75), np.log(1.35), 61))  # fc / bandwidth tried
# the fit in two passes (a detection must stay cheap): every template at every 3rd cutoff,
# then the 6 best at every cutoff within a step of their best. On 2,459 validation spectra
# (filter rows at 6-14 kHz, out-of-template filters, MP3, resampled) it picks what trying
# every template at every cutoff picks on every one (4 ms -> 1.2 ms per fit at 11 kHz)
COARSE_STEP = 3
REFINE_TEMPLATES = 6
TEMPLATE_SPAN = (0.5, 3.0)  # f / fc covered by the templates (0 dB below, 200 dB above)
TEMPLATE_POINTS = 600       # log-spaced
TEMPLATE_MAX_DB = 200.0


@lru_cache(maxsize=1)
def templates() -> tuple[np.ndarray, float, float]:
    """(filters, TEMPLATE_POINTS) float64 attenuations in dB (>= 0) of TEMPLATE_FILTERS at
    log-spaced f / fc over TEMPLATE_SPAN (designed at 6 kHz, 48 kHz), the log of the first
    point and the log step (read-only, cached)."""
    log_lo, log_hi = np.log(TEMPLATE_SPAN[0]), np.log(TEMPLATE_SPAN[1])
    ratio = np.exp(np.linspace(log_lo, log_hi, TEMPLATE_POINTS))
    table = np.array([np.clip(-filters.zero_phase_response_db(48000, 6000.0, family, order,
                                                               6000.0 * ratio),
                              0.0, TEMPLATE_MAX_DB)
                      for family, order in TEMPLATE_FILTERS])
    table.flags.writeable = False
    return table, float(log_lo), float((log_hi - log_lo) / (TEMPLATE_POINTS - 1))


def _attenuation_db(which: np.ndarray | int, ratio: np.ndarray) -> np.ndarray:
    """Templates ``which`` (one, or (n,) broadcasting against ``ratio``) at f / fc ``ratio``
    -> dB, linear in log f / fc; 0 below TEMPLATE_SPAN, TEMPLATE_MAX_DB above."""
    table, log_lo, step = templates()
    position = (np.log(np.maximum(ratio, 1e-9)) - log_lo) / step
    below, above = position < 0, position > TEMPLATE_POINTS - 1
    position = np.clip(position, 0, TEMPLATE_POINTS - 1 - 1e-9)
    index = position.astype(np.int64)
    frac = position - index
    out = table[which, index] * (1 - frac) + table[which, index + 1] * frac
    return np.where(below, 0.0, np.where(above, TEMPLATE_MAX_DB, out))


def fit_skirt(level_db: np.ndarray, freqs_hz: np.ndarray, log_f: np.ndarray, edge_hz: float
              ) -> tuple[int, float, float] | None:
    """The template that fits a row of smoothed dB levels (bins,) best above ``edge_hz``:
    (template index, cutoff in Hz, RMS error in dB), or None where the passband is too
    narrow for a trend or the skirt spans fewer than MIN_FIT_BINS bins."""
    gap_db = trend_gap_db(level_db, freqs_hz, log_f, edge_hz)
    fit = None if gap_db is None else _fit(gap_db, freqs_hz, edge_hz)
    return None if fit is None else fit[:3]


def _fit(gap_db: np.ndarray, freqs_hz: np.ndarray, edge_hz: float
         ) -> tuple[int, float, float, int] | None:
    """:func:`fit_skirt` on a row's gap below its trend (bins,), plus the bin where the
    skirt reaches its floor (the fit's end). Two passes: every template at every
    COARSE_STEP-th cutoff, then the REFINE_TEMPLATES best templates at every cutoff within a
    coarse step of their best."""
    first = int(np.searchsorted(freqs_hz, FIT_FROM * edge_hz))
    floor = np.flatnonzero(gap_db[first:] > FIT_FLOOR_GAP_DB)
    last = first + (int(floor[0]) if floor.size else len(gap_db) - first)
    if last - first < MIN_FIT_BINS:
        return None
    ratio, target = freqs_hz[first:last] / edge_hz, gap_db[first:last]
    coarse = np.arange(0, len(CUTOFF_RATIOS), COARSE_STEP)
    rms = _rms(np.arange(len(TEMPLATE_FILTERS)), coarse, ratio, target)
    best = (np.inf, 0, 0)
    for k in np.argsort(rms.min(axis=1))[:REFINE_TEMPLATES]:
        centre = int(coarse[int(np.argmin(rms[k]))])
        fine = np.arange(max(centre - COARSE_STEP + 1, 0),
                         min(centre + COARSE_STEP, len(CUTOFF_RATIOS)))
        fine_rms = _rms(np.array([k]), fine, ratio, target)[0]
        c = int(np.argmin(fine_rms))
        if fine_rms[c] < best[0]:
            best = (float(fine_rms[c]), int(k), int(fine[c]))
    return best[1], float(CUTOFF_RATIOS[best[2]] * edge_hz), best[0], last


def _rms(which: np.ndarray, cutoffs: np.ndarray, ratio: np.ndarray, target_db: np.ndarray
         ) -> np.ndarray:
    """(templates, cutoffs) RMS dB error of templates ``which`` at CUTOFF_RATIOS[``cutoffs``]
    against the gap ``target_db`` at f / bandwidth ``ratio`` (each (n,)); the templates are
    held at FIT_FLOOR_GAP_DB + 5 dB, as the gap is fitted only down to its floor."""
    candidates = ratio[None, :] / CUTOFF_RATIOS[cutoffs][:, None]         # (cutoffs, n)
    predicted = np.minimum(_attenuation_db(which[:, None, None], candidates[None]),
                           FIT_FLOOR_GAP_DB + 5.0)                      # (which, cutoffs, n)
    return np.sqrt(np.mean((predicted - target_db) ** 2, axis=-1))


def fitted_boost_db(level_db: np.ndarray, freqs_hz: np.ndarray, log_f: np.ndarray,
                    edge_hz: float) -> np.ndarray | None:
    """(bins,) the boost in dB that a close fit (:func:`fit_skirt`, RMS under
    MAX_FIT_RMS_DB) gives a row: its filter's inverse at FC_SHIFT above the fitted cutoff,
    from BOOST_FROM x ``edge_hz`` to the skirt's floor, at most MAX_FIT_BOOST_DB; None
    without a close fit."""
    gap_db = trend_gap_db(level_db, freqs_hz, log_f, edge_hz)
    fit = None if gap_db is None else _fit(gap_db, freqs_hz, edge_hz)
    if fit is None or fit[2] > MAX_FIT_RMS_DB:
        return None
    k, cutoff_hz, _, last = fit
    boost = np.zeros(len(freqs_hz))
    start = int(np.searchsorted(freqs_hz, BOOST_FROM * edge_hz))
    boost[start:last] = np.minimum(_attenuation_db(
        k, freqs_hz[start:last] / (cutoff_hz * (1.0 + FC_SHIFT))), MAX_FIT_BOOST_DB)
    return boost


class TemplateFit:
    """The estimate of the module docstring, as :class:`rtbwe.skirt_model.SkirtModel`'s
    interface: the tracker calls :meth:`gain` at each detection."""

    name = TEMPLATE_FIT
    takes_scaled = True  # the tracker passes the cutoff scaler's choice (gain's ``scaled``)

    def gain(self, power: np.ndarray, bandwidth_hz: np.ndarray, sample_rate: int,
             window_samples: int, scaled: np.ndarray | None = None) -> np.ndarray:
        """Long-term powers (rows, window_samples // 2 + 1) and (rows,) detected bandwidths ->
        (rows, bins) float64 amplitude gain minus 1 (0: leave the bin), as
        :func:`rtbwe.skirt.skirt_gain`, whose gain it starts from and never lowers.
        ``scaled`` (rows,) bool: the rows the cutoff scaler runs; unless FIT_SCALED_WINDOWS,
        they keep the trend rule's gain."""
        out, limited, level_db = skirt_gain_and_levels(power, bandwidth_hz, sample_rate,
                                                       window_samples)
        edge_hz = np.asarray(bandwidth_hz, dtype=np.float64).reshape(-1)
        # rows the trend rule boosts are band-limited, known and not silent already
        fitted = out.any(axis=1) & (edge_hz >= FIT_FROM_HZ)
        if scaled is not None and not FIT_SCALED_WINDOWS:
            fitted &= ~np.asarray(scaled, bool)
        rows = np.flatnonzero(fitted)
        if rows.size == 0:
            return out
        freqs_hz, log_f = _grid(int(sample_rate), int(window_samples))
        # every boosted row is band-limited, so skirt_gain has smoothed it already
        levels = level_db[np.searchsorted(limited, rows)]
        for r, level in zip(rows, levels):
            boost_db = fitted_boost_db(level, freqs_hz, log_f, float(edge_hz[r]))
            if boost_db is not None:
                trend_db = 20.0 * np.log10(1.0 + out[r])
                out[r] = 10.0 ** (np.maximum(boost_db, trend_db) / 20.0) - 1.0
        return out


@lru_cache(maxsize=1)
def template_fit() -> TemplateFit:
    """The one estimate (it holds no state)."""
    return TemplateFit()
