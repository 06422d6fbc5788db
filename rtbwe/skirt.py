"""Undo a gentle low-pass's skirt: boost the band just above the detected bandwidth back up.

A filter with a gentle roll-off (a Butterworth, an analogue tone control, a tape machine's
head) does not remove the band above its cutoff: it attenuates it, by 12 dB a tenth of an
octave above a zero-phase Butterworth 6's -6 dB point and by 40 dB half an octave above. What
is still there is the true signal at a lower level, so a gain brings it back exactly (the
network can only guess). A resampler or a codec leaves a cliff instead, and there is
nothing to boost.

The gain per bin, from the tracker's long-term powers ``P[k]`` (rows, bins) and the
detected bandwidth ``e`` (:func:`rtbwe.bandwidth.detect_bandwidth_hz`)::

    L[k]     = 10 log10 of P smoothed over 5 bins (as the detection)
    trend[k] = a line in (log f, dB) fitted to L over TREND_SPAN x e (the top of the
               passband), its slope clamped to [-12, 0] dB per octave
    gap[k]   = trend[k] - L[k]: how far the input lies below its own passband's trend
    gain_db  = min(gap - MARGIN_DB, MAX_BOOST_DB) where positive, for the bins from e up to
               the first one whose gap exceeds FLOOR_GAP_DB (there the filter has left
               nothing but a floor; for a skirt at least DEEP_MIN_WIDTH x e wide to it, on
               to the first gap over BOOST_FLOOR_GAP_DB, within (1 + MAX_WIDTH) x e:
               sixteenth session); 0 everywhere else, and 0 everywhere when that span is
               narrower than MIN_WIDTH x e (a cliff: a resampler's or an MP3 encoder's
               transition band, 3-6 % of e, where little is left and aliasing may be), or
               when the gap at STEEP_RATIO x e is under BOOST_STEEP_DB (a codec's shallow
               roll-off: GSM's, 9-14 dB there on validation, a Butterworth 6's 20-34 dB;
               fourteenth session), or when the floor is reached only beyond MAX_WIDTH x e
               (the detection lies well below the filter's edge, on music falling ahead of
               it; fifteenth session), or never within that (a noise floor; sixteenth),
               or when, at a bandwidth under BOOST_EDGE_BELOW_HZ, it falls more than
               BOOST_EDGE_FALL_DB in one FALL_STEP right above the bandwidth (a resampler's
               cliff detected a little under it, where the FIR would lift the passband
               below the edge; eighteenth session, below 10 kHz since the nineteenth)

``MARGIN_DB`` keeps it conservative: a boost beyond the truth costs more than a boost short
of it, and music's own roll-off at the top of the passband is not the filter's. The
constants were chosen on the validation split (never the test split; docs/training.md, tenth
session). Whole-clip boosts alone (no network) on the validation captures: Butterworth 6 rows
+0.6 dB and Chebyshev-1 rows +0.4 dB on average, nothing on resamplers and codecs, for
TREND_SPAN (0.6, 0.9); every span starting at 0.3 x e had a worst row of -0.18 dB or
lower. Through the
processor with the shipped default: MIN_WIDTH took the 8 kHz resampler row from -0.11 to
+0.03 dB, and MAX_BOOST_DB 16 (not 20) kept every full-band clip's output within 41 dB of
its input (39.8 at 20) for 0.1 dB less on the filter rows. GSM's roll-off passed the cliff
test (-0.06 dB on validation, one clip -0.19) until BOOST_STEEP_DB (fourteenth session:
GSM -0.02 -> -0.00 dB through the default, 21 validation clips). A lossy file's encoder
low-pass is still boosted like any gentle filter.

A card may name a learned estimate of the same gain instead (``skirt_model``,
:mod:`rtbwe.skirt_model`; the opt-in card ``default-learned-skirt``, twelfth session): it gives
up no margin, and learned from the training split when a roll-off is the music's own. It
boosts only where :func:`has_skirt` sees a skirt. This trend rule serves every card that
names none (the default), or names an unregistered one.

The processor applies the gain per window in the detected-band lock
(:class:`rtbwe.passband.DetectedBandLock`, ``skirt_eq=True``) as a zero-phase Kaiser FIR
(:func:`skirt_responses`), like the lock's own high-pass, so it adds no latency and streaming
still equals offline.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from .bandwidth import FULL_BAND_FRACTION, smooth_db

TREND_SPAN = (0.6, 0.9)   # the passband's trend is fitted over this x the bandwidth
# and its slope clamped to [-this, 0] dB per octave: the boost's own clamp, calibrated with it
# (rtbwe.bandwidth's detection clamped at 12 too until the sixteenth session, now 24)
TREND_MAX_SLOPE_DB_PER_OCTAVE = 12.0
MARGIN_DB = 10.0          # boost only what lies more than this below the trend, by the excess
MAX_BOOST_DB = 16.0       # and by at most this
FLOOR_GAP_DB = 40.0       # the skirt ends where the input lies this far below the trend
# and the boost goes on to where it lies this far below (within (1 + MAX_WIDTH) x the
# bandwidth): a filter's skirt still holds the true signal 40-60 dB down, and MAX_BOOST_DB of
# it comes back (sixteenth session, validation, filter rows: +0.01-0.11 dB at 50, +0.02-0.14
# at 60, 80 as 60)
BOOST_FLOOR_GAP_DB = 60.0
# only for skirts at least this wide to their FLOOR_GAP_DB floor: a resampler's transition
# that passes MIN_WIDTH is not boosted deeper (it holds aliases: one validation clip via
# 8 kHz went below -0.5 dB without this)
DEEP_MIN_WIDTH = 0.12
MIN_WIDTH = 0.08          # a skirt narrower than this x the bandwidth is a cliff: no boost
STEEP_RATIO = 1.3         # has_skirt(steep_db=...) reads the skirt's depth here x the bandwidth
BOOST_STEEP_DB = 18.0     # and the boost needs at least this depth there (GSM's roll-off: 9-14)
KAISER_BETA = 8.0
# nor a skirt that reaches its floor only beyond this x the bandwidth: the detection then lies
# well below the filter's edge, on music whose own spectrum falls (or dips) ahead of it, and
# the trend overstates what is missing (fifteenth session: one validation clip's second 6 s,
# detected at 4.24 kHz under a Butterworth 6 at 6 kHz, width 0.63-0.70, went to -5.3 dB with
# the boost, +3.3 without). 0.7 removed three other clips below -0.5 dB on validation, 0.6
# also that one; windows of the validation Butterworth 6 rows at 3.5-8 kHz wider than 0.6:
# 0-13 %, Chebyshev-1 6 0-10 %; the test rows moved by 0.01 dB at most. A skirt that never
# reaches its floor counts as reaching it beyond Nyquist (sixteenth session): a noise floor
# less than FLOOR_GAP_DB under the passband (hiss added after a filter; the click of a stream
# that starts mid-signal, held in the long-term spectrum for seconds) is not a skirt; it had
# been boosted by up to MAX_BOOST_DB from the bandwidth to Nyquist
MAX_WIDTH = 0.6
# steepest_fall_db reads the steepest fall over this x the bandwidth, within a span of it:
# right above the edge (a resampler's cliff) or past the skirt's start (a codec's shelf)
FALL_STEP = 0.15
EDGE_SPAN = (1.0, 1.3)
SHELF_SPAN = (1.3, 2.2)
# no boost on a skirt falling more than this in a FALL_STEP within EDGE_SPAN, at bandwidths
# below BOOST_EDGE_BELOW_HZ (eighteenth session, validation: via 8 kHz +0.043 / +0.012 ->
# +0.048 / +0.032 dB, every other row the same; at every bandwidth it cost the 11 / 14 kHz
# filter rows up to 0.45 dB: there a step of 0.15 x the bandwidth spans a filter's skirt).
# Nineteenth session, 5 -> 10 kHz: validation filter windows at 6-8 kHz fall 46 dB at most
# (per clip, median over detections), resampled via 16 kHz and MP3 at 32 kbps 49-87; via 16
# kHz -0.0005 -> +0.011 dB from 0 s (+0.01 from 6 s, unchanged), MP3 32 kbps -0.0027 /
# -0.0021 -> -0.0023 / -0.0016, every other row the same to 1e-4 dB
BOOST_EDGE_FALL_DB = 55.0
BOOST_EDGE_BELOW_HZ = 10000.0


def skirt_gain(power: np.ndarray, bandwidth_hz: np.ndarray, sample_rate: int,
               window_samples: int) -> np.ndarray:
    """Long-term powers (rows, window_samples // 2 + 1) and (rows,) detected bandwidths ->
    (rows, bins) float64 amplitude gain minus 1 per bin (0: leave the bin as it is). Rows
    that are full band, unknown (NaN) or silent get zeros."""
    return skirt_gain_and_levels(power, bandwidth_hz, sample_rate, window_samples)[0]


def skirt_gain_and_levels(power: np.ndarray, bandwidth_hz: np.ndarray, sample_rate: int,
                          window_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`skirt_gain`, plus what it smoothed: the band-limited rows' indices (k,) and
    their :func:`smooth_db` levels (k, bins), for an estimate that starts from this gain
    (:class:`rtbwe.skirt_shape.TemplateFit`) and would otherwise smooth them again."""
    power = np.atleast_2d(np.asarray(power, dtype=np.float64))
    rows, bins = power.shape
    out = np.zeros((rows, bins))
    edge_hz = np.asarray(bandwidth_hz, dtype=np.float64).reshape(-1)
    limited = np.flatnonzero(np.isfinite(edge_hz)
                             & (edge_hz < FULL_BAND_FRACTION * sample_rate / 2))
    if limited.size == 0:
        return out, limited, np.zeros((0, bins))
    freqs_hz, log_f = _grid(int(sample_rate), int(window_samples))
    level_db = smooth_db(power[limited])
    for j, r in enumerate(limited):
        _row_gain(level_db[j], freqs_hz, log_f, float(edge_hz[r]), out[r])
    return out, limited, level_db


@lru_cache(maxsize=8)
def _grid(sample_rate: int, window_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(bins,) rfft bin frequencies and their logs (bin 0 as bin 1), read-only."""
    freqs_hz = np.fft.rfftfreq(window_samples, 1.0 / sample_rate)
    log_f = np.log(np.maximum(freqs_hz, freqs_hz[1]))
    for array in (freqs_hz, log_f):
        array.flags.writeable = False
    return freqs_hz, log_f


def _row_gain(level_db: np.ndarray, freqs_hz: np.ndarray, log_f: np.ndarray,
              edge_hz: float, gain: np.ndarray) -> None:
    """One row of :func:`skirt_gain`: (bins,) dB levels -> ``gain`` (bins,), zeros, filled
    with the gain minus 1 where boosted. Slices, not masks: this runs at every detection."""
    skirt = _skirt_gap(level_db, freqs_hz, log_f, edge_hz, span_floor_db=BOOST_FLOOR_GAP_DB)
    if skirt is None or not _steep(skirt, freqs_hz, edge_hz, BOOST_STEEP_DB):
        return
    if _edge_cliff(level_db, freqs_hz, edge_hz):
        return  # a resampler's cliff that the width test let through
    first, gap_db = skirt
    boost_db = np.clip(gap_db - MARGIN_DB, 0.0, MAX_BOOST_DB)
    gain[first:first + len(gap_db)] = 10.0 ** (boost_db / 20.0) - 1.0


def _trend_fit(level_db: np.ndarray, log_f: np.ndarray, lo: int, hi: int
               ) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through ``level_db[lo:hi]`` against
    ``log_f[lo:hi]`` (dB per natural-log unit of frequency), unclamped."""
    x, y = log_f[lo:hi], level_db[lo:hi]
    centred = x - x.mean()
    slope = float(centred @ (y - y.mean())) / float(centred @ centred)
    return slope, float(y.mean()) - slope * float(x.mean())


def passband_slope_db_per_octave(level_db: np.ndarray, edge_hz: float, sample_rate: int,
                                 window_samples: int) -> float:
    """How steeply a row of smoothed dB levels (bins,) falls over the top of its passband,
    TREND_SPAN x ``edge_hz`` (the span the skirt's trend is fitted on), in dB per octave,
    not clamped (music: about -12 to 0; a dark passband falls faster); 0 for a span
    too narrow to fit."""
    freqs_hz, log_f = _grid(int(sample_rate), int(window_samples))
    lo = int(np.searchsorted(freqs_hz, TREND_SPAN[0] * edge_hz))
    hi = int(np.searchsorted(freqs_hz, TREND_SPAN[1] * edge_hz, side="right"))
    if hi - lo < 3:
        return 0.0
    return _trend_fit(level_db, log_f, lo, hi)[0] * np.log(2.0)


def trend_gap_db(level_db: np.ndarray, freqs_hz: np.ndarray, log_f: np.ndarray,
                 edge_hz: float) -> np.ndarray | None:
    """(bins,) how far each bin of a row of smoothed dB levels lies below the passband's
    trend: a line in (log f, dB) fitted over TREND_SPAN x ``edge_hz``, its slope clamped to
    [-TREND_MAX_SLOPE_DB_PER_OCTAVE, 0] dB per octave; None where that span holds fewer
    than 3 bins."""
    lo = int(np.searchsorted(freqs_hz, TREND_SPAN[0] * edge_hz))
    hi = int(np.searchsorted(freqs_hz, TREND_SPAN[1] * edge_hz, side="right"))
    if hi - lo < 3:
        return None
    slope, _ = _trend_fit(level_db, log_f, lo, hi)
    slope = min(max(slope, -TREND_MAX_SLOPE_DB_PER_OCTAVE / np.log(2.0)), 0.0)
    x, y = log_f[lo:hi], level_db[lo:hi]
    intercept = float(y.mean()) - slope * float(x.mean())
    return intercept + slope * log_f - level_db


def _skirt_gap(level_db: np.ndarray, freqs_hz: np.ndarray, log_f: np.ndarray, edge_hz: float,
               min_width: float = MIN_WIDTH, span_floor_db: float = FLOOR_GAP_DB
               ) -> tuple[int, np.ndarray] | None:
    """(first bin, gap_db (bins of the skirt,)): how far each bin from the bandwidth up to
    the floor lies below the passband's trend; None for a cliff (a span narrower than
    ``min_width`` x the bandwidth), a span that reaches its floor only beyond MAX_WIDTH x
    the bandwidth (or never, where Nyquist lies beyond that), or a passband too narrow to
    fit a trend. Those tests take the floor at FLOOR_GAP_DB; the span returned ends at the
    first bin more than ``span_floor_db`` (>= FLOOR_GAP_DB) below the trend, and by
    (1 + MAX_WIDTH) x the bandwidth."""
    gap_db = trend_gap_db(level_db, freqs_hz, log_f, edge_hz)
    if gap_db is None:
        return None
    first = int(np.searchsorted(freqs_hz, edge_hz))
    gap_db = gap_db[first:]
    floor = gap_db > FLOOR_GAP_DB
    count = int(np.argmax(floor)) if floor.any() else len(gap_db)
    if count == 0 or freqs_hz[first + count - 1] - edge_hz < min_width * edge_hz:
        return None  # a cliff (a resampler's or a codec's transition), not a filter's skirt
    # the floor's frequency; one never reached lies beyond Nyquist
    floor_hz = freqs_hz[first + count - 1] if count < len(gap_db) else np.inf
    if floor_hz - edge_hz > MAX_WIDTH * edge_hz and freqs_hz[-1] - edge_hz > MAX_WIDTH * edge_hz:
        return None  # the music's own roll-off ahead of the filter's edge, or a noise floor
    if span_floor_db > FLOOR_GAP_DB and floor_hz - edge_hz >= DEEP_MIN_WIDTH * edge_hz:
        reach = int(np.searchsorted(freqs_hz, (1.0 + MAX_WIDTH) * edge_hz, side="right")) - first
        deeper = gap_db[count:reach] > span_floor_db
        count = count + (int(np.argmax(deeper)) if deeper.any() else len(deeper))
    return first, gap_db[:count]


def steepest_fall_db(level_db: np.ndarray, edge_hz: float, sample_rate: int,
                     window_samples: int, span: tuple[float, float] = SHELF_SPAN) -> float:
    """The steepest fall of a row of smoothed dB levels (bins,) over FALL_STEP x ``edge_hz``
    starting within ``span`` x ``edge_hz``, in dB (0 where that span does not fit below
    Nyquist). A filter's skirt falls at most about 50 dB in such a step right above its edge
    (a zero-phase Chebyshev-1 6, the steepest family here) and, past 1.3 x the edge, at its
    asymptotic rate (72 dB per octave: about 10 dB per step). A resampler's cliff, detected
    a little under it, falls up to 70 dB in one step right above the edge (EDGE_SPAN); a
    codec that holds a shelf above its edge and then stops (GSM through an 8 kHz rate, whose
    images end 1.3-1.7 x above the detected edge) 30-50 dB in one step past 1.3 x
    (SHELF_SPAN). Validation figures: docs/training.md, eighteenth session."""
    freqs_hz, _ = _grid(int(sample_rate), int(window_samples))
    return _fall_db(level_db, freqs_hz, edge_hz, span)


def _fall_db(level_db: np.ndarray, freqs_hz: np.ndarray, edge_hz: float,
             span: tuple[float, float]) -> float:
    """:func:`steepest_fall_db` on a bin grid already at hand."""
    step = max(1, int(round(FALL_STEP * edge_hz / freqs_hz[1])))
    lo = int(np.searchsorted(freqs_hz, span[0] * edge_hz))
    hi = min(int(np.searchsorted(freqs_hz, span[1] * edge_hz)), len(freqs_hz) - step)
    if hi <= lo:
        return 0.0
    return float(np.max(level_db[lo:hi] - level_db[lo + step:hi + step]))


def _edge_cliff(level_db: np.ndarray, freqs_hz: np.ndarray, edge_hz: float) -> bool:
    """The boost's cliff rule: at a bandwidth under BOOST_EDGE_BELOW_HZ, a fall of more than
    BOOST_EDGE_FALL_DB in one FALL_STEP within EDGE_SPAN x the bandwidth (a resampler's cliff
    detected a little under it)."""
    return edge_hz < BOOST_EDGE_BELOW_HZ and _fall_db(level_db, freqs_hz, edge_hz,
                                                      EDGE_SPAN) > BOOST_EDGE_FALL_DB


def has_skirt(level_db: np.ndarray, edge_hz: float, sample_rate: int, window_samples: int,
              steep_db: float | None = None, min_width: float = MIN_WIDTH,
              edge_cliff: bool = False) -> bool:
    """Whether a row of smoothed dB levels (bins,) falls off above ``edge_hz`` as a gentle
    filter's skirt (at least MIN_WIDTH x the bandwidth wide before the floor), not as a
    resampler's or codec's cliff. The learned estimate (:mod:`rtbwe.skirt_model`) boosts
    only such rows. ``steep_db`` (None: no such test): the skirt must also lie at least
    this far below the passband's trend at STEEP_RATIO x the bandwidth (or have reached its
    floor before): a filter's skirt, not a codec's shallow roll-off (GSM's lies about
    9-14 dB down there). ``min_width``: the narrowest skirt, x the bandwidth, that is not a
    cliff. ``edge_cliff``: nor a resampler's cliff by the boost's cliff rule (BOOST_EDGE_FALL_DB
    within EDGE_SPAN, under BOOST_EDGE_BELOW_HZ)."""
    freqs_hz, log_f = _grid(int(sample_rate), int(window_samples))
    skirt = _skirt_gap(level_db, freqs_hz, log_f, float(edge_hz), min_width)
    if skirt is None or (edge_cliff and _edge_cliff(level_db, freqs_hz, float(edge_hz))):
        return False
    return steep_db is None or _steep(skirt, freqs_hz, float(edge_hz), steep_db)


def _steep(skirt: tuple[int, np.ndarray], freqs_hz: np.ndarray, edge_hz: float,
           steep_db: float) -> bool:
    """Whether a :func:`_skirt_gap` result lies at least ``steep_db`` below the trend at
    STEEP_RATIO x ``edge_hz``, or reached its floor before."""
    first, gap_db = skirt
    at = int(np.searchsorted(freqs_hz, STEEP_RATIO * edge_hz)) - first
    return at >= len(gap_db) or gap_db[max(at, 0)] >= steep_db


def skirt_responses(gain: np.ndarray, n_fft: int, taps: int) -> np.ndarray:
    """(rows, bins) gains minus 1 on a window's rfft grid -> (rows, n_fft // 2 + 1) complex128
    spectra of zero-phase Kaiser FIRs (``taps`` long, centred as the lock's high-pass, so a
    product with a window's spectrum is its 'same'-length filtering)."""
    gain = np.atleast_2d(gain)
    window_samples = 2 * (gain.shape[1] - 1)
    if taps % 2 == 0 or taps > window_samples:
        raise ValueError(f"taps must be odd and at most {window_samples}, got {taps}")
    half = taps // 2
    impulse = np.fft.irfft(gain, window_samples, axis=1)  # zero-phase: centred on sample 0
    centred = np.roll(impulse, half, axis=1)[:, :taps] * _kaiser(taps)
    return np.fft.rfft(centred, n_fft, axis=1)


@lru_cache(maxsize=8)
def _kaiser(taps: int) -> np.ndarray:
    window = signal.windows.kaiser(taps, KAISER_BETA)
    window.flags.writeable = False
    return window


def skirt_boost(inputs: np.ndarray, responses: np.ndarray, taps: int, n_fft: int
                ) -> np.ndarray:
    """inputs (rows, window_samples) float32 and their :func:`skirt_responses` on an
    ``n_fft`` grid -> (rows, window_samples) float32: what the skirt gain adds to each
    window."""
    window_samples = inputs.shape[1]
    spectrum = np.fft.rfft(inputs, n_fft, axis=1)
    spectrum *= responses
    half = taps // 2
    return np.fft.irfft(spectrum, n_fft, axis=1)[:, half:half + window_samples].astype(
        np.float32, copy=False)  # already float32 for complex64 responses
