"""Cutoff scaling: run a network trained at one cutoff on inputs band-limited anywhere.

A network trained for one band limit (``arunet-small-cond-6k``: 48 kHz audio low-passed at
6 kHz) learned to continue a spectrum that stops at 6 kHz. Music band-limited at another
frequency ``e`` looks the same to it once time is stretched by ``e / 6000``: resampling a
window of ``W`` samples to ``W' = W e / target_hz`` samples and handing it to the network as
if it were 48 kHz audio puts the input's edge at ``target_hz``. The network's output window is
resampled back to ``W`` samples, and the detected-band lock (:mod:`rtbwe.passband`) keeps the
input below ``e`` as for any model, so the round trip only ever changes the added band.

Per window (rows of the processor's framing, each with its own cutoff)::

    frame (W,) --resample--> (W',) --network (condition at the scaled bands)--> (W',)
          --resample--> (W,) --lock (input below e, gains, skirt boost)--> overlap-add

It is done window by window, so it adds no latency and streaming still equals offline (each
window depends only on its samples and the tracker's state at that frame). The resampling is
a Kaiser-windowed sinc (cut off at the lower of the two rates' Nyquist frequencies) with the
window mirrored at its edges (a SciPy sparse product per direction: 0.13 ms per window and
round trip at 688 samples, 0.45 ms for two windows at 1,360, on the 2-core VM). The network
runs in ONNX Runtime when the engine does (``backend="onnx"``, what ``auto`` picks on CPU):
one export with the time axis free serves every ``W'``
(:class:`rtbwe.engine_onnx.AnyLengthOnnxRunner`, built once per process); else in eager
torch. Its cost scales with ``W'``: ``max_length_ratio`` caps ``W' / W`` (a cutoff above
``max_length_ratio x target_hz`` would map above ``target_hz``; such windows go to the
engine's network instead, see :meth:`CutoffScaler.select`).

The condition a layout-1 network takes (:mod:`rtbwe.conditioning`: 250 Hz bands from 1 to
11 kHz relative to 2-4 kHz) is pooled from the tracker's long-term spectrum at the scaled
band edges ``f W' / W``: the same relative levels the network would see on the resampled
stream.

Measured (docs/training.md, thirteenth and fourteenth sessions; 23 test clips): card
``default-scaled-6k`` +1.19 to +1.42 dB on the Butterworth 3.5-8 kHz rows where the default
adds +0.55 to +0.91, but more clips made worse at 11-14 kHz and on resampled rows; card
``default-scaled-half-6k`` (the half-width student ``arunet-small-half-cond-6k``, cutoffs
3-9.9 kHz, steep skirts only) +1.19 to +1.38 dB there, within 0.03 dB of it under the same
rules, the default's own results at 14 kHz and full band, one clip in 20-23 made worse on
five rows, at 1.04-1.22 x the default's RT. The fifteenth session left dark passbands and
narrow skirts to the engine's network (DARK_ROLLOFF_DB, DARK_SLOPE_DB_PER_OCTAVE, MIN_WIDTH)
and made the choice at each detection (the tracker holds it, :meth:`select` is its
``scale_selector``): one clip made worse on two test rows, 1.03-1.18 x the default's RT.
Since the seventeenth session the default itself (card ``default-scaled-above-5k``) scales
cutoffs from 5 kHz up (a card's ``min_cutoff_hz``), keeping the skirt boost on its windows
(``keep_boost``): +1.74 / +1.37 dB on the Butterworth 6 / 8 kHz rows against +0.90 / +0.58
unscaled, one clip in 23 made worse on each. Since the eighteenth session (card
``default-scaled-above-3k``) it scales from 3 kHz again, the scaled band at 0.6 below 5 kHz
(a gain table), not on a codec's shelf there nor on a resampler's cliff anywhere (a card's
``max_shelf_drop_db`` and ``max_edge_drop_db``, :meth:`CutoffScaler._cliff_or_shelf`):
+1.28 / +1.37 dB on the Butterworth 3.5 / 4 kHz rows against +0.54 / +0.49, GSM and the
resampled rows unchanged.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .conditioning import (BAND_LOW_HZ, BAND_WIDTH_HZ, NUM_BANDS, REFERENCE_BANDS,
                           to_condition)
from .passband import gain_table, table_gains

LENGTH_STEP = 16       # scaled window lengths are rounded to this many samples
SINC_ZEROS = 16        # zero crossings of the interpolation kernel on each side
KAISER_BETA = 8.0      # about -70 dB sidelobes
MIN_LENGTH_RATIO = 0.25
MAX_LENGTH_RATIO = 4.0
# scale a window only if the length cap leaves its edge at most this x target_hz: validation
# (fourteenth session) detects the Chebyshev-1 11 kHz row at 12.1 kHz (6.05 kHz scaled at a
# cap of 2) and the 14 kHz rows at 14.2-14.9 kHz (7.1-7.5 kHz), where the scaled network made
# 13 % of clips worse
REACH_TOLERANCE = 1.1
# nor below this x target_hz: an input whose detected edge lies that low is mostly music dark
# at the top ahead of the real edge (validation: two clips of the Butterworth 3.5 kHz row
# detected at 2.2 kHz went to -15.5 and -5.5 dB scaled; the engine's network: -4.6 / +0.0)
MIN_SCALED_RATIO = 0.5
# and only a skirt at least this far below the passband's trend at 1.3 x the cutoff
# (rtbwe.skirt.has_skirt's steep_db): validation windows with a skirt, fraction passing 18 dB:
# Butterworth 6 and Chebyshev-1 6 rows 0.93-1.00, GSM 0.40 (its codec's roll-off is shallow)
STEEP_DB = 18.0
# and at least this wide (x the cutoff; rtbwe.skirt.MIN_WIDTH, 0.08, for the boost). Windows
# of the validation rows at least 0.08 / 0.12 wide (fifteenth session): resampled via 16 kHz
# 3 / 0 % (the scaled network cost that row -0.03 dB), via 8 kHz 6 / 3 %, Butterworth 6 at
# 3.5-8 kHz 94-100 / 94-100 %, Chebyshev-1 6 at 3.5-8 kHz 91-95 / 87-93 %
MIN_WIDTH = 0.12
# nor an input dark at the top of its passband: music whose own spectrum falls into the cutoff,
# where the scaled network (trained on brighter spectra at 6 kHz, its band added at gain 1)
# adds far more than the input lost. Validation (fifteenth session, docs/training.md): every
# clip the scaled network made worse than the default by more than 1 dB at cutoffs of 7 kHz
# and above had a passband falling faster than 14 dB per octave over its top (-14.2 to
# -18.5; of the clips it helped there one fell 15.5, the others 12.8 or less), and the one
# it made worse on a resampled row lost 20.7 dB from the octave below the cutoff to the one
# under it (rtbwe.tracker.octave_rolloff_db; other scaled clips: -18.7 and up)
DARK_ROLLOFF_DB = -15.0
DARK_ABOVE_HZ = 7000.0
DARK_SLOPE_DB_PER_OCTAVE = -14.0
# a card's max_shelf_drop_db (the codec-shelf test) reads cutoffs below this only: an 8 kHz
# codec (GSM) is detected at 3.6-4.9 kHz; validation (eighteenth session), the shelf's largest
# fall over 0.15 x the cutoff within 1.3-2.2 x it on the windows the scaler took: GSM p5
# 27-29 dB, median 42; Butterworth 6 / Chebyshev-1 6 at 3.5-4 kHz p95 25.5-29. At 6-8 kHz the
# same test at 30 dB took windows of the filter rows (from 0 / 6 s: Butterworth 8 kHz
# 1.12 / 1.20 -> 1.00 / 1.04 dB pooled, Chebyshev-1 6 kHz 1.18 / 1.32 -> 1.12 / 1.05,
# Chebyshev-1 8 kHz 1.13 / 1.00 -> 1.00 / 0.86)
SHELF_BELOW_HZ = 5000.0


def scaled_length(cutoff_hz: float, target_hz: float, window_samples: int,
                  max_length_ratio: float) -> int:
    """The window length ``W'`` that puts ``cutoff_hz`` at ``target_hz``, rounded to
    LENGTH_STEP and at most ``max_length_ratio x W``; 0 for a cutoff that is not finite."""
    if not np.isfinite(cutoff_hz) or cutoff_hz <= 0:
        return 0
    ratio = min(max(cutoff_hz / target_hz, MIN_LENGTH_RATIO), max_length_ratio)
    return max(LENGTH_STEP, int(round(window_samples * ratio / LENGTH_STEP)) * LENGTH_STEP)


@lru_cache(maxsize=128)
def resampling_kernel(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_out, taps) int64 indices into a window of ``n_in`` samples and float32 weights:
    ``y[j] = sum_t x[index[j, t]] * weight[j, t]`` resamples the window to ``n_out`` samples
    spanning the same time (sample centres aligned), band-limited to the lower rate's
    Nyquist frequency, the window mirrored at its edges (read-only, cached)."""
    step = n_in / n_out                       # input samples per output sample
    cut = min(1.0, n_out / n_in)              # the kernel's cutoff, x the input's Nyquist
    half = int(np.ceil(SINC_ZEROS / cut))
    centre = (np.arange(n_out) + 0.5) * step - 0.5
    first = np.floor(centre).astype(np.int64) - half + 1
    index = first[:, None] + np.arange(2 * half)[None, :]
    distance = centre[:, None] - index
    inside = np.clip(1.0 - (distance / (half + 1)) ** 2, 0.0, None)
    weight = cut * np.sinc(cut * distance) * np.i0(KAISER_BETA * np.sqrt(inside)) / np.i0(
        KAISER_BETA)
    weight /= weight.sum(axis=1, keepdims=True)  # unit gain at DC
    index = np.abs(index)                       # mirror: -1 -> 1, ...
    index = np.where(index > n_in - 1, 2 * (n_in - 1) - index, index)
    index = np.clip(index, 0, n_in - 1)
    index.flags.writeable = False
    weight = weight.astype(np.float32)
    weight.flags.writeable = False
    return index, weight


@lru_cache(maxsize=128)
def resampling_matrix(n_in: int, n_out: int):
    """:func:`resampling_kernel` as a sparse (n_out, n_in) CSR matrix (mirrored taps summed)."""
    from scipy import sparse

    index, weight = resampling_kernel(n_in, n_out)
    taps = index.shape[1]
    rows = np.repeat(np.arange(n_out), taps)
    return sparse.csr_matrix((weight.ravel(), (rows, index.ravel())), shape=(n_out, n_in),
                             dtype=np.float32)


def resample_rows(x: np.ndarray, n_out: int) -> np.ndarray:
    """x (rows, n_in) float32 -> (rows, n_out) float32 (see :func:`resampling_kernel`)."""
    matrix = resampling_matrix(x.shape[1], int(n_out))
    return np.ascontiguousarray((matrix @ np.asarray(x, np.float32).T).T, dtype=np.float32)


@lru_cache(maxsize=64)
def _scaled_pooling(sample_rate: int, window_samples: int, scaled_samples: int) -> np.ndarray:
    """(bins, NUM_BANDS) 0/1: which layout-1 band each rfft bin falls in once the window is
    resampled to ``scaled_samples`` (bin frequency x window / scaled)."""
    freqs_hz = np.fft.rfftfreq(window_samples, 1.0 / sample_rate) * (window_samples /
                                                                     scaled_samples)
    band = np.floor((freqs_hz - BAND_LOW_HZ) / BAND_WIDTH_HZ).astype(np.int64)
    pooling = (band[:, None] == np.arange(NUM_BANDS)[None, :]).astype(np.float64)
    pooling.flags.writeable = False
    return pooling


def scaled_conditions(power: np.ndarray, sample_rate: int, window_samples: int,
                      scaled_samples: int) -> np.ndarray:
    """Long-term bin powers (rows, window_samples // 2 + 1) -> layout-1 conditions
    (rows, 40) float32 at the band edges of a window resampled to ``scaled_samples``. At
    ``scaled_samples == window_samples`` this is the tracker's own layout-1 condition."""
    return to_condition(power @ _scaled_pooling(sample_rate, window_samples, scaled_samples),
                        REFERENCE_BANDS)


# shipped models a card may name for scaling: the 6 kHz model and its half-width student
SCALED_MODELS = ("arunet-small-cond-6k", "arunet-small-half-cond-6k")


@lru_cache(maxsize=4)
def _load_scaled(model: str, device: str) -> torch.nn.Module:
    """A shipped model through the checked loader, once per process and device: a stream
    that grows its buffers builds a new scaler, and must not read and probe the file again
    in an audio callback."""
    from .weights import load_model

    return load_model(model, map_location=device).eval()


@lru_cache(maxsize=4)
def _onnx_scaled(model: str, num_threads: int):
    """The shipped model ``model`` as an any-length ONNX Runtime session
    (:class:`rtbwe.engine_onnx.AnyLengthOnnxRunner`), once per process and thread count;
    raises what the runner raises (onnxruntime missing, an export that fails parity)."""
    from .engine_onnx import AnyLengthOnnxRunner

    return AnyLengthOnnxRunner(_load_scaled(model, "cpu"), num_threads)


class CutoffScaler:
    """Runs a network trained at one cutoff (a shipped layout-1 model, by name) on the
    windows whose input has a filter's skirt (:func:`rtbwe.skirt.has_skirt`) at a cutoff
    the length cap can reach (:meth:`select`), each resampled so that its cutoff lands at
    ``target_hz``; see the module docstring.

    :class:`rtbwe.streaming.WindowPath` asks :meth:`select` which rows it takes, runs its
    own engine on the others (cliffs: resamplers and codecs, where the 6 kHz model adds a
    band that costs more than it gives) and :meth:`run` on these. Rows are grouped by
    scaled length, so a stream (one held cutoff) makes one network call per hop. The scaled
    network's change to the window is multiplied by ``gain`` over the lock's gain for the
    cutoff's bucket, so the lock adds it at ``gain`` (before the lock's gate and cap):
    a number, or a table ``[[up_to_hz, gain], ...]`` per bucket of the cutoff, as a card's
    ``extension_gain`` (:func:`rtbwe.passband.gain_table`; fitted by
    ``rtbwe-train calibrate-scaled``).
    """

    def __init__(self, model: str, sample_rate: int, window_samples: int, target_hz: float,
                 max_length_ratio: float = 2.0, gain: float | list = 1.0,
                 min_cutoff_hz: float | None = None, keep_boost: bool = False,
                 max_shelf_drop_db: float | None = None, max_edge_drop_db: float | None = None,
                 device: torch.device | str = "cpu",
                 backend: str = "eager", num_threads: int | None = None):
        if model not in SCALED_MODELS:
            raise ValueError(f"cutoff scaling runs a shipped model ({', '.join(SCALED_MODELS)}), "
                             f"not {model!r}")
        self.model = _load_scaled(model, str(device))
        self.sample_rate, self.window_samples = int(sample_rate), int(window_samples)
        self.target_hz, self.max_length_ratio = float(target_hz), float(max_length_ratio)
        # the lowest cutoff scaled (a card's min_cutoff_hz; MIN_SCALED_RATIO x target_hz)
        self.min_cutoff_hz = (MIN_SCALED_RATIO * self.target_hz if min_cutoff_hz is None
                              else float(min_cutoff_hz))
        # whether the lock still boosts the skirt of the windows this scaler takes (a card's
        # keep_boost; off before the seventeenth session: the 6 kHz network was taken to
        # equalise the skirt itself, but on validation the boost on top added 0.15-0.24 dB)
        self.keep_boost = bool(keep_boost)
        # a card's max_shelf_drop_db: no scaling where the band above the edge is a codec's
        # shelf ending in a cliff (GSM; eighteenth session); None: no such test
        self.max_shelf_drop_db = None if max_shelf_drop_db is None else float(max_shelf_drop_db)
        # and a card's max_edge_drop_db: nor where it is a resampler's cliff that the width
        # test (MIN_WIDTH) let through
        self.max_edge_drop_db = None if max_edge_drop_db is None else float(max_edge_drop_db)
        self.gain_edges_hz, self.gains = gain_table(gain)
        self.condition_bands = int(getattr(self.model, "condition_bands", 0) or 0)
        if self.condition_bands not in (0, NUM_BANDS):
            raise ValueError(f"cutoff scaling needs a plain or layout-1 ({NUM_BANDS}-band) "
                             f"model; {model} takes {self.condition_bands} condition values")
        self.device = torch.device(device)
        # the scaled network through ONNX Runtime when the engine runs ONNX (eighteenth
        # session: the default's RT on noise low-passed at 6 kHz 0.28 -> 0.14 with an ONNX
        # engine); eager if that cannot be built, and why
        self.backend, self.fallback_reason, self._onnx = "eager", None, None
        if backend == "onnx":
            try:
                self._onnx = _onnx_scaled(model, int(num_threads or torch.get_num_threads()))
                self.backend = "onnx"
            except Exception as err:  # the exporter raises many types; eager still works
                self.fallback_reason = f"onnx: {type(err).__name__}: {err}"
        elif backend != "eager":
            raise ValueError(f"the cutoff scaler runs eager or onnx, not {backend!r}")

    def lengths(self, cutoffs_hz: np.ndarray) -> np.ndarray:
        """(rows,) cutoffs -> (rows,) scaled lengths; 0 for rows at Nyquist."""
        nyquist_hz = self.sample_rate / 2
        return np.array([0 if c >= nyquist_hz else scaled_length(
            c, self.target_hz, self.window_samples, self.max_length_ratio)
            for c in np.asarray(cutoffs_hz, np.float64)], np.int64)

    def select(self, rows: int, cutoffs_hz: np.ndarray, power: np.ndarray,
               extend_below_hz: float) -> np.ndarray:
        """(rows,) bool: the rows this scaler runs: a cutoff below ``extend_below_hz`` (the
        lock extends the window), at least ``min_cutoff_hz`` (by default MIN_SCALED_RATIO x
        ``target_hz``), that the length cap moves to within REACH_TOLERANCE of ``target_hz``
        (at most ``REACH_TOLERANCE x max_length_ratio x target_hz``; above it the network
        would see its edge further above ``target_hz`` than it was trained for), and a
        filter's skirt above it in the long-term spectrum ``power`` (>= rows, bins): gentle
        (:func:`rtbwe.skirt.has_skirt`, at least MIN_WIDTH x the cutoff wide) but at least
        STEEP_DB deep at 1.3 x the cutoff, under a passband that is not dark at its top
        (:meth:`_dark`), and, with a card's ``max_edge_drop_db`` / ``max_shelf_drop_db``,
        not a resampler's cliff or a codec's shelf (:meth:`_cliff_or_shelf`)."""
        from .bandwidth import smooth_db
        from .tracker import octave_rolloff_db
        from .skirt import has_skirt

        cutoff = np.asarray(cutoffs_hz[:rows], np.float64)
        chosen = np.zeros(rows, bool)
        reach_hz = REACH_TOLERANCE * self.max_length_ratio * self.target_hz
        candidates = np.flatnonzero((cutoff < extend_below_hz) & (cutoff <= reach_hz)
                                    & (cutoff >= self.min_cutoff_hz))
        if candidates.size:
            level_db = smooth_db(power[candidates])
            rolloff_db = np.empty(candidates.size)
            octave_rolloff_db(power[candidates], candidates.size, cutoff[candidates],
                              self.sample_rate / self.window_samples, self.sample_rate / 2,
                              rolloff_db)
            chosen[candidates] = [
                has_skirt(level, cutoff[r], self.sample_rate, self.window_samples,
                          steep_db=STEEP_DB, min_width=MIN_WIDTH)
                and not self._dark(level, cutoff[r], roll)
                and not self._cliff_or_shelf(level, cutoff[r])
                for level, r, roll in zip(level_db, candidates, rolloff_db)]
        return chosen

    def bucket_gains(self, cutoffs_hz: np.ndarray) -> np.ndarray:
        """(rows,) cutoffs -> (rows,) the scaled band's gain for each (its bucket's)."""
        return table_gains(self.gain_edges_hz, self.gains, cutoffs_hz)

    def _dark(self, level_db: np.ndarray, cutoff_hz: float, rolloff_db: float) -> bool:
        """Whether a row's passband is dark at its top (see DARK_ROLLOFF_DB): falling more
        than DARK_ROLLOFF_DB over the octave below the cutoff, or, for a cutoff above
        DARK_ABOVE_HZ, faster than DARK_SLOPE_DB_PER_OCTAVE over its top."""
        from .skirt import passband_slope_db_per_octave

        if rolloff_db < DARK_ROLLOFF_DB:
            return True
        return cutoff_hz > DARK_ABOVE_HZ and passband_slope_db_per_octave(
            level_db, cutoff_hz, self.sample_rate, self.window_samples
        ) < DARK_SLOPE_DB_PER_OCTAVE

    def _cliff_or_shelf(self, level_db: np.ndarray, cutoff_hz: float) -> bool:
        """Whether a row's band above the cutoff is a resampler's cliff (its steepest fall
        within EDGE_SPAN x the cutoff over ``max_edge_drop_db``) or, under SHELF_BELOW_HZ, a
        codec's shelf that ends in a cliff (within SHELF_SPAN, over ``max_shelf_drop_db``;
        :func:`rtbwe.skirt.steepest_fall_db`); False without those settings."""
        from .skirt import EDGE_SPAN, SHELF_SPAN, steepest_fall_db

        def fall(span):
            return steepest_fall_db(level_db, cutoff_hz, self.sample_rate, self.window_samples,
                                    span)

        return ((self.max_edge_drop_db is not None
                 and fall(EDGE_SPAN) > self.max_edge_drop_db)
                or (self.max_shelf_drop_db is not None and cutoff_hz < SHELF_BELOW_HZ
                    and fall(SHELF_SPAN) > self.max_shelf_drop_db))

    def run(self, frames: np.ndarray, index: np.ndarray, cutoffs_hz: np.ndarray,
            power: np.ndarray, lock_gains: np.ndarray) -> int:
        """frames (>= rows, window) float32, rows ``index`` in place: input + (network's
        output - input) x ``gain`` / ``lock_gains`` (one per row of ``index``; the lock's
        bucket gain for the row's cutoff). ``power`` (>= rows, bins): the tracker's
        long-term spectrum per row. Returns the number of network calls."""
        lengths = self.lengths(cutoffs_hz[index])
        factor = self.bucket_gains(cutoffs_hz[index]) / np.maximum(
            np.asarray(lock_gains, np.float64), 1e-3)
        calls = 0
        for length in np.unique(lengths):
            if length == 0:
                continue
            group = np.flatnonzero(lengths == length)
            rows_of = index[group]
            x = frames[rows_of]
            scaled = resample_rows(x, int(length))
            c = None if not self.condition_bands else scaled_conditions(
                power[rows_of], self.sample_rate, self.window_samples, int(length))
            back = resample_rows(self._network(scaled, c), self.window_samples)
            frames[rows_of] = x + (back - x) * factor[group, None].astype(np.float32)
            calls += 1
        return calls

    def _network(self, scaled: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
        """The scaled network: (rows, n) float32 [+ (rows, bands)] -> (rows, n) float32."""
        if self._onnx is not None:
            return np.ascontiguousarray(self._onnx(scaled, conditions))
        rows, samples = scaled.shape
        inputs = [torch.from_numpy(scaled).view(rows, 1, samples).to(self.device)]
        if conditions is not None:
            inputs.append(torch.from_numpy(conditions).to(self.device))
        with torch.inference_mode():
            return self.model(*inputs).view(rows, samples).cpu().numpy()
