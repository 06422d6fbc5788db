"""The spectrum tracker: the input's causal long-term spectrum, and what is read from it.

In the processor's data path (input -> kernels framing -> **spectrum tracker** -> engine ->
kernels overlap-add -> output), :class:`SpectrumTracker` sits between the framing and the
engine. Per channel it keeps every rfft bin's exponential average of the windowed frames'
powers (time constant ``rtbwe.conditioning.TIME_CONSTANT_S``), and from it, per window:

- the condition a conditioned model takes (:mod:`rtbwe.conditioning`, layouts 1 and 2);
- the input's bandwidth (:func:`rtbwe.bandwidth.detect_bandwidth_hz`), re-detected every
  DETECT_EVERY_FRAMES frames once MIN_HISTORY_S of audio has been seen and held in between,
  at the same stream positions in streaming and offline, so streaming equals offline;
- at each detection, when asked: a cutoff scaler's choice
  (:meth:`rtbwe.rescale.CutoffScaler.select`) and the skirt gain (:mod:`rtbwe.skirt`, or a
  card's estimate: :mod:`rtbwe.skirt_model`, :mod:`rtbwe.skirt_shape`, which is told the
  scaler's choice);
- the window measures the detected-band lock gates on (:func:`band_ratio_db`'s excess over
  the detection's, :func:`octave_rolloff_db`, :func:`octave_level_db`).

The per-frame work runs in the Numba kernels of :mod:`rtbwe.kernels.spectrum` (NumPy
references in :mod:`rtbwe.kernels.reference`). Split from :mod:`rtbwe.conditioning` in the
twenty-first session (that module kept the condition vector); the names moved here are
still importable from there.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .conditioning import (CEILING_DB, FLOOR_DB, NUM_BANDS, SCALE_DB, TIME_CONSTANT_S, _hann,
                           band_bins, check_layout, condition_geometry, decay_per_frame)

MAX_SAMPLE = 8.0  # the tracker clips samples to +-8 (18 dB over full scale)
# A stream's first window is W - H zeros, then x[0:H]: an input that starts mid-signal (an
# excerpt, a cut) steps there, and the step's broadband click stayed in the 4 s average for
# seconds, a floor about 35 dB under the passband that hid a resampler's stopband (sixteenth
# session). The tracker's copy of that window fades x in over this many samples (the audio
# path is untouched): 256 left the stopband of a resampled validation clip within 1.1 dB of
# its level without the step, 128 up to 15 dB above it
START_FADE_SAMPLES = 256
DETECT_EVERY_FRAMES = 8  # about 85 ms at 48 kHz / 512
# the bandwidth is unknown (NaN) until this much audio has been seen. 0.5 s until the
# twenty-fifth session; 0.25 s raised every filter row of the validation matrix by 0.02-0.13 dB
# (from 0 and 12 s) with no clip more below -0.5 dB and the full-band row unchanged: a sixth
# of a 6 s clip's error can lie in its first 0.75 s, passed through until the first detection
MIN_HISTORY_S = 0.25


def min_history_frames(sample_rate: int, hop_samples: int) -> int:
    """Frames before the first bandwidth estimate (MIN_HISTORY_S, rounded up)."""
    return int(np.ceil(MIN_HISTORY_S * sample_rate / hop_samples))


def last_detection_frame(frames_seen: int, sample_rate: int, hop_samples: int) -> int:
    """How many frames the tracker had seen at its latest bandwidth detection (0: none yet)."""
    first = min_history_frames(sample_rate, hop_samples)
    if frames_seen < first:
        return 0
    return first + (frames_seen - first) // DETECT_EVERY_FRAMES * DETECT_EVERY_FRAMES


CONTRAST_GUARD = 1.1  # "above the cutoff" starts this far above it (past the filter's edge)


def octave_rolloff_db(power: np.ndarray, rows: int, cutoff_hz: np.ndarray, bin_hz: float,
                      nyquist_hz: float, out: np.ndarray) -> None:
    """How steeply a spectrum falls just below a cutoff: bin powers (>= rows, bins) and
    cutoffs (>= rows,) Hz -> ``out[:rows]`` float64 dB, the power in [k / 2, k) over that in
    [k / 4, k / 2) (``k``: the cutoff's bin, rounded); 0 for a cutoff at Nyquist. White noise
    gives +3 dB, pink 0, most music -1 to -7 (validation windows: median -3.4); a clip dark
    all the way down (falling 15 dB per octave and more) -9 and below: the input of the
    optional roll-off gate of :class:`rtbwe.passband.DetectedBandLock`."""
    bins = power.shape[1]
    for r in range(rows):  # a few rows per hop: slices beat a cumulative sum
        if cutoff_hz[r] >= nyquist_hz:
            out[r] = 0.0
            continue
        k = _octave_bin(cutoff_hz[r], bin_hz, bins)
        upper, lower = power[r, k // 2:k].sum(), power[r, k // 4:k // 2].sum()
        out[r] = 10.0 * np.log10((upper + 1e-30) / (lower + 1e-30))


def _octave_bin(cutoff_hz: float, bin_hz: float, bins: int) -> int:
    """The cutoff's bin for the octave measures (rounded, in [4, bins - 1])."""
    return int(min(max(np.round(cutoff_hz / bin_hz), 4.0), bins - 1.0))


def octave_level_db(power: np.ndarray, rows: int, cutoff_hz: np.ndarray, bin_hz: float,
                    nyquist_hz: float, out: np.ndarray) -> None:
    """How dark a spectrum is at a cutoff: bin powers (>= rows, bins) and cutoffs (>= rows,)
    Hz -> ``out[:rows]`` float64 dB, the power in [k / 2, k) (``k``: the cutoff's bin,
    rounded) over the power of all bins above DC; 0 for a cutoff at Nyquist. Music low-passed
    anywhere from 3.5 to 14 kHz: -36 dB and above on the validation split (most -30 to -10);
    a passage whose own spectrum has died away far below the cutoff: -40 and below (the
    input of the dark gate of :class:`rtbwe.passband.DetectedBandLock`)."""
    bins = power.shape[1]
    for r in range(rows):
        if cutoff_hz[r] >= nyquist_hz:
            out[r] = 0.0
            continue
        k = _octave_bin(cutoff_hz[r], bin_hz, bins)
        octave, total = power[r, k // 2:k].sum(), power[r, 1:].sum()
        out[r] = 10.0 * np.log10((octave + 1e-30) / (total + 1e-30))


def band_ratio_db(power: np.ndarray, cutoff_hz: np.ndarray, sample_rate: int,
                  window_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """How much of a spectrum lies above a cutoff: bin powers (rows, window_samples // 2 + 1)
    and cutoffs (rows,) Hz -> ``(ratio_db, below_power)``, each (rows,) float64:
    ``below_power`` is the power in the octave below the cutoff, [cutoff / 2, cutoff), and
    ``ratio_db`` = 10 log10(power above CONTRAST_GUARD x cutoff / below_power). Rows with the
    cutoff at Nyquist get 0 and 0.

    The detected-band lock compares each window's ratio with the long-term spectrum's at the
    detection that set the cutoff (the excess, :meth:`SpectrumTracker.update`'s
    ``contrast``). A band-limited input filtered the same way all along stays near 0 dB
    (measured on the validation split, 1024 / 768: median -4 to -1 dB, 99th percentile 8-12 dB
    for the matrix's filters, 10-17 dB for its resamplers); a window holding content above the
    cutoff that the detection did not see (the first cymbal after a dark intro, an MP3 frame
    coded wider than the rest: 16-24 % of MP3 windows exceed 10 dB) is tens of dB above."""
    rows, bins = power.shape
    bin_hz = sample_rate / window_samples
    k = np.clip(np.round(np.asarray(cutoff_hz, float) / bin_hz).astype(np.int64), 2, bins - 1)
    k_above = np.minimum(np.ceil(k * CONTRAST_GUARD).astype(np.int64), bins - 1)
    above, below = np.empty(rows), np.empty(rows)
    for r in range(rows):  # a few rows per hop: slices beat a cumulative sum
        above[r] = power[r, k_above[r] + 1:].sum()
        below[r] = power[r, k[r] // 2:k[r]].sum()
    ratio_db = 10.0 * np.log10((above + 1e-30) / (below + 1e-30))
    full = np.asarray(cutoff_hz) >= sample_rate / 2
    ratio_db[full], below[full] = 0.0, 0.0
    return ratio_db, below


def _hold(at_due: np.ndarray, before: np.ndarray, latest: np.ndarray, out: np.ndarray) -> None:
    """Per frame, the latest detection at or before it: ``out[:, f] = at_due[:, latest[f]]``,
    or ``before`` (the value held from earlier calls) where ``latest[f] < 0``. at_due
    (channels, detections, ...), before (channels, ...), latest (frames,) int, out
    (channels, frames, ...)."""
    known = latest >= 0
    out[:, known] = at_due[:, latest[known]]
    out[:, ~known] = before[:, None]


class SpectrumTracker:
    """Causal long-term power spectrum per channel; :meth:`update` gives each frame's
    condition (for a conditioned model) and the input's bandwidth (:mod:`rtbwe.bandwidth`).

    Args:
        channels: independent channels (each has its own average).
        sample_rate, window_samples, hop_samples: the processor's framing.
        condition_bands: the model's condition length (0: none, 40: layout 1, 48: layout 2).
        time_constant_s: the exponential average's time constant.
        context_samples: the zeros before x[0] in the stream's first window (the
            processor's W - H); the tracker's copy of that window fades x in after them
            over START_FADE_SAMPLES, so an input that starts mid-signal leaves no click in
            the average. 0 (frames that are not a stream's): no fade.

    ``bandwidth_hz`` (channels,) is the latest estimate per channel: NaN until
    ``MIN_HISTORY_S`` of audio has been seen or while the input is silent, the Nyquist
    frequency for a full-band input; ``widest_hz`` the largest of them, None while none is
    known.

    The per-frame work runs in the Numba kernels of :mod:`rtbwe.kernels.spectrum` on buffers
    kept between calls (the rfft and the bandwidth detection stay NumPy); the detection runs
    only on every DETECT_EVERY_FRAMES-th frame.
    """

    def __init__(self, channels: int, sample_rate: int, window_samples: int, hop_samples: int,
                 condition_bands: int = NUM_BANDS, time_constant_s: float = TIME_CONSTANT_S,
                 context_samples: int = 0):
        check_layout(condition_bands)
        if condition_bands == NUM_BANDS:
            band_bins(sample_rate, window_samples)  # validates the geometry
        self.channels, self.sample_rate = channels, sample_rate
        self.window_samples, self.condition_bands = window_samples, condition_bands
        self.decay = decay_per_frame(sample_rate, hop_samples, time_constant_s)
        # the zeros before x[0] in a stream's first window (the processor's: W - H); 0: none,
        # no fade
        self.context_samples = int(context_samples)
        self.min_frames = min_history_frames(sample_rate, hop_samples)
        bins = window_samples // 2 + 1
        self.sums = np.zeros((channels, bins), np.float64)
        self.weights = np.zeros(channels, np.float64)
        self.frames_seen = 0
        self.bandwidth_hz = np.full(channels, np.nan)
        self.reference_db = np.zeros(channels)  # band_ratio_db of the latest detection
        self.widest_hz: float | None = None
        # the skirt gain (rtbwe.skirt) of the latest detection per channel, (channels, bins),
        # computed only for callers that ask for it (update's ``skirts``)
        self.skirt_gain, self._skirt_top_hz = np.zeros((channels, bins)), None
        self.skirt_estimator = None  # a rtbwe.skirt_model.SkirtModel, or the trend rule
        # a cutoff scaler's choice (rtbwe.rescale.CutoffScaler.select), made at each
        # detection from its long-term spectrum and cutoff, and held per channel like the
        # skirt gain: None, or a callable (power (n, bins), cutoffs (n,)) -> (n,) bool
        self.scale_selector = None
        self.scaled = np.zeros(channels, bool)
        self.nyquist_hz = sample_rate / 2.0
        self._cutoff_hz = np.full(channels, self.nyquist_hz)  # extension_cutoff_hz(bandwidth)
        self._hann = _hann(window_samples)
        self._geometry = (condition_geometry(sample_rate, window_samples, condition_bands)
                          if condition_bands else None)
        self.kernels = kernels  # rtbwe.kernels; tests swap in rtbwe.kernels.reference
        self._band_power = np.zeros(0 if self._geometry is None else len(self._geometry[1]))
        self._reserve(channels)

    def _reserve(self, rows: int) -> None:
        """Scratch for ``rows`` windows: (rows, window) float64 windowed frames, (rows, bins)
        complex128 spectra, float64 powers and averages, (rows,) cutoffs and references."""
        bins = self.window_samples // 2 + 1
        self._windowed = np.zeros((rows, self.window_samples))
        self._spectrum = np.zeros((rows, bins), np.complex128)
        self._power, self._averaged = np.zeros((rows, bins)), np.zeros((rows, bins))
        self._row_cutoff_hz, self._row_reference_db = np.zeros(rows), np.zeros(rows)
        self._excess_db, self._below_power = np.zeros(rows), np.zeros(rows)

    def _fade_in_start(self, windowed: np.ndarray, num_frames: int) -> None:
        """Each channel's first window of the stream (rows ``c * num_frames`` of the windowed
        frames, (rows, window) float64, in place): x faded in (a raised-cosine ramp over
        START_FADE_SAMPLES, at most the rest of the window) after the ``context_samples``
        zeros that precede x[0]."""
        start = self.context_samples
        fade = min(START_FADE_SAMPLES, self.window_samples - start)
        if start <= 0 or fade <= 0:
            return
        ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
        windowed[::num_frames, start:start + fade] *= ramp

    def clear(self) -> None:
        self.sums.fill(0.0)
        self.weights.fill(0.0)
        self.frames_seen = 0
        self.bandwidth_hz.fill(np.nan)
        self.reference_db.fill(0.0)
        self.scaled.fill(False)
        self._hold_skirt(np.zeros_like(self.skirt_gain))
        self.widest_hz = None
        self._cutoff_hz.fill(self.nyquist_hz)

    @property
    def skirt_top_hz(self) -> float | None:
        """The highest frequency the held skirt gains boost (any channel); None: none."""
        return self._skirt_top_hz

    def boosted_top_hz(self, skirt: np.ndarray) -> float | None:
        """The highest frequency that skirt gains (rows, bins) boost in any row; None: none."""
        boosted = np.flatnonzero(skirt.any(axis=0))
        return (float(boosted[-1] * self.sample_rate / self.window_samples)
                if boosted.size else None)

    def _hold_skirt(self, skirt: np.ndarray) -> None:
        """Hold (channels, bins) skirt gains, and the top frequency they boost."""
        self.skirt_gain, self._skirt_top_hz = skirt, self.boosted_top_hz(skirt)

    def _due_frames(self, num_frames: int) -> list[int]:
        """Which of the next ``num_frames`` frames (0-based) re-detect the bandwidth: those
        after which ``frames_seen`` is ``min_frames + j * DETECT_EVERY_FRAMES``."""
        first = max(self.frames_seen + 1, self.min_frames)
        first += -(first - self.min_frames) % DETECT_EVERY_FRAMES
        return list(range(first - self.frames_seen - 1, num_frames, DETECT_EVERY_FRAMES))

    def update(self, frames: np.ndarray, num_frames: int, out: np.ndarray | None,
               cutoffs_hz: np.ndarray | None = None,
               contrast: tuple[np.ndarray, ...] | None = None,
               skirts: np.ndarray | None = None, scaled: np.ndarray | None = None) -> None:
        """frames rows ``c * num_frames + f`` (as the framing kernel writes them) -> ``out``
        rows in the same order, (channels * num_frames, condition_bands) float32 (None for
        an unconditioned model), ``cutoffs_hz`` (channels * num_frames,) float64: where
        each window's network band starts (:func:`rtbwe.bandwidth.extension_cutoff_hz`),
        and ``contrast``: two to four (channels * num_frames,) float64 arrays that receive
        each window's excess (its :func:`band_ratio_db` minus the long-term spectrum's at the
        detection that set its cutoff, dB), its power in the octave below the cutoff, and
        (a third array, or None for none) the long-term spectrum's :func:`octave_rolloff_db`
        below the cutoff and (a fourth) its :func:`octave_level_db` there;
        ``skirts`` (channels * num_frames, bins) float64 receives each window's skirt gain
        (pass it on every update of a stream, or on none); ``scaled``
        (channels * num_frames,) bool receives the ``scale_selector``'s choice held from
        each window's latest detection (the same rule)."""
        rows = self.channels * num_frames
        if rows == 0:
            return
        if rows > self._windowed.shape[0]:
            self._reserve(rows)
        # a glitch far over full scale must not own the average for minutes (MAX_SAMPLE)
        impl, windowed = self.kernels, self._windowed[:rows]
        impl.window_for_fft(frames, rows, self._hann, MAX_SAMPLE, windowed)
        if self.frames_seen == 0:
            self._fade_in_start(windowed, num_frames)
        spectrum = np.fft.rfft(windowed, axis=-1, out=self._spectrum[:rows])
        power, averaged = self._power, self._averaged
        impl.accumulate_power(spectrum, self.channels, num_frames, self.decay, self.sums,
                              self.weights, power, averaged)
        # a 4 s average moves slowly: detect every DETECT_EVERY_FRAMES frames (at the same
        # stream positions in streaming and offline) and hold the value in between
        due = self._due_frames(num_frames)
        self.frames_seen += num_frames
        cutoff, reference_db = self._row_cutoff_hz[:rows], self._row_reference_db[:rows]
        if due:
            self._detect(averaged[:rows], num_frames, due, cutoff, reference_db, skirts,
                         scaled)
        else:
            cutoff.reshape(self.channels, num_frames)[:] = self._cutoff_hz[:, None]
            reference_db.reshape(self.channels, num_frames)[:] = self.reference_db[:, None]
            if skirts is not None:
                skirts[:rows].reshape(self.channels, num_frames, -1)[:] = \
                    self.skirt_gain[:, None]
            if scaled is not None:
                scaled[:rows].reshape(self.channels, num_frames)[:] = self.scaled[:, None]
        if cutoffs_hz is not None:
            cutoffs_hz[:rows] = cutoff
        if contrast is not None:
            impl.window_contrast(power, rows, cutoff, reference_db,
                                 self.sample_rate / self.window_samples, self.nyquist_hz,
                                 CONTRAST_GUARD, self._excess_db, self._below_power)
            contrast[0][:rows] = self._excess_db[:rows]
            contrast[1][:rows] = self._below_power[:rows]
            if len(contrast) > 2 and contrast[2] is not None:
                octave_rolloff_db(averaged, rows, cutoff, self.sample_rate / self.window_samples,
                                  self.nyquist_hz, contrast[2])
            if len(contrast) > 3:
                octave_level_db(averaged, rows, cutoff, self.sample_rate / self.window_samples,
                                self.nyquist_hz, contrast[3])
        if out is not None and self.condition_bands:
            band_of_bin, reference_bands = self._geometry
            impl.pooled_condition(averaged, rows, band_of_bin, reference_bands, cutoff,
                                  self.nyquist_hz, FLOOR_DB, CEILING_DB, SCALE_DB,
                                  self._band_power, out)

    def long_term_power(self, rows: int) -> np.ndarray:
        """(rows, bins) float64 view: each row's long-term spectrum after the last
        :meth:`update` (rows in its order), the input of a scaled condition
        (:mod:`rtbwe.rescale`)."""
        return self._averaged[:rows]

    def _detect(self, averaged: np.ndarray, num_frames: int, due: list[int],
                cutoff: np.ndarray, reference_db: np.ndarray,
                skirts: np.ndarray | None = None, scaled: np.ndarray | None = None) -> None:
        """Bandwidth detection at the ``due`` frames of this call; fills each row's cutoff
        and reference (rows, channel-major), and skirt gain and scaler's choice when asked,
        and updates the held per-channel values."""
        from .bandwidth import detect_bandwidth_hz, extension_cutoff_hz
        from .skirt import skirt_gain

        channels = self.channels
        at_due = averaged.reshape(channels, num_frames, -1)[:, due].reshape(
            -1, averaged.shape[1])
        found = detect_bandwidth_hz(at_due, self.sample_rate, self.window_samples)
        found_db, below = np.zeros(len(found)), np.empty(len(found))  # band_ratio_db's ratio
        self.kernels.window_contrast(at_due, len(found), extension_cutoff_hz(
            found, self.sample_rate), np.zeros(len(found)), self.sample_rate /
            self.window_samples, self.nyquist_hz, CONTRAST_GUARD, found_db, below)
        chosen = None
        if scaled is not None:
            chosen = (np.zeros(len(found), bool) if self.scale_selector is None else
                      np.asarray(self.scale_selector(at_due, extension_cutoff_hz(
                          found, self.sample_rate)), bool)).reshape(channels, -1)
        skirt = None
        if skirts is not None:
            estimate = skirt_gain if self.skirt_estimator is None else self.skirt_estimator.gain
            # an estimate that treats the cutoff scaler's windows apart is told which they are
            extra = ({"scaled": chosen.reshape(-1)} if chosen is not None and
                     getattr(self.skirt_estimator, "takes_scaled", False) else {})
            skirt = estimate(at_due, found, self.sample_rate, self.window_samples,
                             **extra).reshape(channels, len(due), -1)
        found, found_db = found.reshape(channels, -1), found_db.reshape(channels, -1)
        bandwidth = np.empty((channels, num_frames))
        held_db = reference_db.reshape(channels, num_frames)
        held_skirt = (None if skirts is None else
                      skirts[:channels * num_frames].reshape(channels, num_frames, -1))
        held_scaled = (None if chosen is None else
                       scaled[:channels * num_frames].reshape(channels, num_frames))
        latest = np.searchsorted(due, np.arange(num_frames), side="right") - 1
        _hold(found, self.bandwidth_hz, latest, bandwidth)
        _hold(found_db, self.reference_db, latest, held_db)
        if held_skirt is not None:
            _hold(skirt, self.skirt_gain, latest, held_skirt)
        if held_scaled is not None:
            _hold(chosen, self.scaled, latest, held_scaled)
        self.bandwidth_hz = bandwidth[:, -1].copy()
        self.reference_db = held_db[:, -1].copy()
        if skirt is not None:
            self._hold_skirt(skirt[:, -1].copy())
        if chosen is not None:
            self.scaled = chosen[:, -1].copy()
        self._cutoff_hz = extension_cutoff_hz(self.bandwidth_hz, self.sample_rate)
        widest = np.nanmax(self.bandwidth_hz, initial=-1.0)
        self.widest_hz = float(widest) if widest > 0 else None
        cutoff[:] = extension_cutoff_hz(bandwidth.reshape(-1), self.sample_rate)
