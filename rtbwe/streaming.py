"""The windowed data path: framing kernel -> engine (one batch) -> overlap-add kernel.

Between framing and the engine, a :class:`~rtbwe.tracker.SpectrumTracker` turns each
input window, in time order, into the long-term spectrum so far: the input's bandwidth
(:mod:`rtbwe.bandwidth`) and, for a conditioned model, that window's condition. After the
engine, a :class:`~rtbwe.passband.DetectedBandLock` keeps each window's input below its
detected bandwidth (and the whole window when the input is full band), so the network only
fills what is missing. Around the engine, each window is moved into the level range the
networks were trained at (:func:`network_gains`, from the tracker's long-term level) and
moved back after. Streaming and offline see the same windows, conditions, cutoffs and gains.

Both forms below compute the same signal ``y``, so streaming output equals offline output
shifted by the latency, for any block partition.

Geometry (``W`` = window_samples, ``H`` = hop_samples, ``x[t] = 0`` for ``t < 0``)::

    frame k covers input samples [k*H - (W - H), (k + 1)*H)
    y[t] = sum_k w[t - start_k] * model(frame k)[t - start_k] / sum_k w[t - start_k]

    frame 0: |zeros(W-H) x[0:H]|
    frame 1:          |x[0:W]   |          frame k is complete once x[(k+1)*H - 1] arrived,
    frame 2:              |x[H:H+W] |      and y[t] is final once every frame covering t is.

A streaming call that ends just before a hop boundary has finished ``y`` up to ``W - 1``
samples ago, and no block partition needs more, so ``latency_samples = W - 1``.
Output at stream time ``t`` is ``y[t - latency_samples]`` and zero before that.

Offline, the signal is followed by zeros so every frame covering ``y[0:n]`` exists; all
those frames run in batches of ``buffer_size`` samples' worth of windows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import kernels
from .conditioning import check_layout
from .tracker import SpectrumTracker
from .engine import InferenceEngine
from .passband import DetectedBandLock
from .rescale import CutoffScaler


@dataclass
class ProcessorStats:
    """Counters a :class:`~rtbwe.processor.BandwidthExtender` keeps; ``reset()`` keeps them."""

    blocks: int = 0                    # process() calls
    input_samples: int = 0             # samples per channel seen
    windows: int = 0                   # windows run through the network (all channels)
    batches: int = 0                   # network calls
    largest_batch: int = 0             # most windows in one network call
    nonfinite_input_samples: int = 0   # NaN/Inf input samples replaced by 0 (streaming)
    nonfinite_output_samples: int = 0  # NaN/Inf network outputs replaced by 0
    passed_windows: int = 0            # windows the lock kept whole without the network
    engine_seconds: float = 0.0        # wall time inside the network
    input_bandwidth_hz: float | None = None  # detected bandwidth (widest channel); None: unknown
    skirt_boost_hz: float | None = None  # top of the skirt boost (rtbwe.skirt); None: no boost

    def count_batch(self, rows: int, seconds: float, calls: int = 1) -> None:
        self.batches += calls
        self.windows += rows
        self.largest_batch = max(self.largest_batch, rows)
        self.engine_seconds += seconds


def run_batch(engine: InferenceEngine, frames: np.ndarray, rows: int,
              stats: ProcessorStats, conditions: np.ndarray | None = None) -> None:
    """Network on ``frames[:rows]`` in place; non-finite outputs become 0 and are counted."""
    started = time.perf_counter()
    engine.run(frames, rows, frames, conditions)
    stats.count_batch(rows, time.perf_counter() - started)
    stats.nonfinite_output_samples += kernels.replace_nonfinite(frames, rows)


# The networks were trained on music normalised to a 0.7 peak (training.corpus): long-term
# levels of -16 to -30 dBFS RMS. Far below that a network with biases is out of its range: a
# Butterworth 8 kHz validation clip gave +3.4 dB at its own level, +0.8 at 40 dB down and
# -2.3 dB at 60 dB down; far above it, 0.3-0.7 dB less at 12-18 dB up. So the network sees
# each window moved until its channel's long-term level lies within NETWORK_LEVEL_DBFS (by
# at most MAX_NETWORK_GAIN_DB either way), and its output is moved back by the same gain.
NETWORK_LEVEL_DBFS = (-30.0, -16.0)
MAX_NETWORK_GAIN_DB = 60.0


def network_gains(power: np.ndarray, window_samples: int) -> np.ndarray | None:
    """(rows, bins) long-term power spectra of Hann-windowed frames (the tracker's) ->
    (rows,) float32 gains that bring each row's long-term RMS into NETWORK_LEVEL_DBFS, by
    at most MAX_NETWORK_GAIN_DB; None when every gain is 1."""
    # a Hann window keeps 3/8 of a frame's energy: mean power per bin = N * 3/8 * rms^2
    mean_square = power.mean(axis=1) / (0.375 * window_samples)
    low_db, high_db = NETWORK_LEVEL_DBFS
    low, high = 10.0 ** (low_db / 10.0), 10.0 ** (high_db / 10.0)
    if ((mean_square >= low) & (mean_square <= high)).all():
        return None
    target = np.clip(mean_square, low, high)
    limit = 10.0 ** (MAX_NETWORK_GAIN_DB / 10.0)
    return np.sqrt(np.clip(target / np.maximum(mean_square, 1e-30), 1.0 / limit, limit)
                   ).astype(np.float32)


def make_tracker(engine: InferenceEngine, channels: int, sample_rate: int,
                 window_samples: int, hop_samples: int) -> SpectrumTracker:
    """A fresh tracker making the engine's model's condition layout (none, 40 or 48)."""
    check_layout(engine.condition_bands)
    return SpectrumTracker(channels, sample_rate, window_samples, hop_samples,
                           engine.condition_bands, context_samples=window_samples - hop_samples)


class WindowPath:
    """Per-batch steps around the engine: track (conditions, cutoffs) -> network -> lock.

    Args:
        lock: True: the network changes only the band above each window's detected
            bandwidth (:class:`~rtbwe.passband.DetectedBandLock`); a gain or a table of gains
            per cutoff: the same, with that gain on the added band; a dict: the
            lock's keyword arguments (``gain``, ``max_added_ratio``, ``gate``,
            ``skip_network``, ``cutoff_scaling``); a lock: used as is; False: the output as
            is. A lock's ``cutoff_scaling`` runs the network on windows resampled so that
            their cutoff lands at its ``target_hz`` (:mod:`rtbwe.rescale`). A batch whose
            windows the lock would all keep whole (full band, or bandwidth not yet known)
            skips the network unless the lock's ``skip_network`` is False.
    """

    def __init__(self, engine: InferenceEngine, tracker: SpectrumTracker, rows: int,
                 lock: bool | float | list | dict | DetectedBandLock):
        self.engine, self.tracker = engine, tracker
        window_samples = engine.window_samples
        self.conditions = (np.zeros((rows, engine.condition_bands), np.float32)
                           if engine.condition_bands else None)
        self.cutoffs_hz = np.zeros(rows, np.float64)
        off = lock is False or lock is None
        self.scaler: CutoffScaler | None = None
        if off or isinstance(lock, DetectedBandLock):
            self.lock = None if off else lock
        else:
            settings = lock if isinstance(lock, dict) else {"gain": 1.0 if lock is True else lock}
            self.lock = DetectedBandLock(tracker.sample_rate, window_samples, **settings)
        if self.lock is not None and self.lock.cutoff_scaling:
            self.scaler = CutoffScaler(sample_rate=tracker.sample_rate,
                                       window_samples=window_samples, device=engine.device,
                                       backend="onnx" if engine.backend == "onnx" else "eager",
                                       num_threads=engine.num_threads,
                                       **self.lock.cutoff_scaling)
        # which windows the scaler takes: chosen at each detection (the tracker holds it
        # between detections, as it holds the cutoff)
        self.scaled = np.zeros(rows, bool) if self.scaler is not None else None
        tracker.scale_selector = None if self.scaler is None else self._select
        self.inputs = None if off else np.zeros((rows, window_samples), np.float32)
        # the tracker's (excess_db, below_power, rolloff_db, level_db) per window (the lock's
        # gates and cap); rolloff_db only for a lock with the roll-off gate
        self.contrast = None if off else tuple(
            None if k == 2 and not self.lock.needs_rolloff else np.zeros(rows) for k in range(4))
        # each window's skirt gain (rtbwe.skirt), when the lock boosts a gentle filter's skirt
        self.skirts = (np.zeros((rows, window_samples // 2 + 1))
                       if self.lock is not None and self.lock.skirt_eq else None)
        # the tracker computes the skirt gain at each detection: by the lock's learned
        # estimate when it has one (rtbwe.skirt_model), else by the trend rule (rtbwe.skirt)
        tracker.skirt_estimator = None if self.skirts is None else self.lock.skirt_estimator

    def run(self, frames: np.ndarray, num_frames: int, stats: ProcessorStats) -> None:
        """frames (channels * num_frames, window) in place: input windows -> output ones."""
        rows = self.tracker.channels * num_frames
        self.tracker.update(frames, num_frames, self.conditions, self.cutoffs_hz,
                            self.contrast, self.skirts, self.scaled)
        stats.input_bandwidth_hz = self.tracker.widest_hz
        if self.lock is not None:
            if self.lock.skip_network and self.lock.passes_all(rows, self.cutoffs_hz):
                if self.skirts is not None:
                    stats.skirt_boost_hz = None  # no window extended, none boosted
                stats.passed_windows += rows  # frames hold the input: the lock's output
                return
            self.inputs[:rows] = frames[:rows]
        gains = network_gains(self.tracker.long_term_power(rows), frames.shape[1])
        if gains is not None:  # a quiet or loud input: the network sees it at its training level
            frames[:rows] *= gains[:, None]
        if self.scaler is not None:
            self._run_scaled(frames, rows, stats)
        else:
            run_batch(self.engine, frames, rows, stats, self.conditions)
        if gains is not None:
            frames[:rows] /= gains[:, None]
        if self.skirts is not None:  # after the scaler, which takes its rows' boost away
            stats.skirt_boost_hz = self._boosted_top_hz(rows)
        if self.lock is not None:
            self.lock.apply(self.inputs, frames, rows, self.cutoffs_hz, self.contrast,
                            self.skirts)

    def _run_scaled(self, frames: np.ndarray, rows: int, stats: ProcessorStats) -> None:
        """The network step with a cutoff scaler (:mod:`rtbwe.rescale`): the rows it selects
        (a gentle skirt) through its scaled network, the others through the engine."""
        power = self.tracker.long_term_power(rows)
        chosen = self.scaled[:rows]
        rest = np.flatnonzero(~chosen)
        if rest.size == rows:
            run_batch(self.engine, frames, rows, stats, self.conditions)
            return
        if rest.size:  # the engine on the other rows, packed
            packed = frames[rest]
            conditions = None if self.conditions is None else self.conditions[rest]
            run_batch(self.engine, packed, rest.size, stats, conditions)
            frames[rest] = packed
        index = np.flatnonzero(chosen)
        started = time.perf_counter()
        calls = self.scaler.run(frames, index, self.cutoffs_hz, power,
                                self.lock.bucket_gains(self.cutoffs_hz[index]))
        stats.count_batch(index.size, time.perf_counter() - started, calls)
        stats.nonfinite_output_samples += kernels.replace_nonfinite(frames, rows)
        if self.skirts is not None and not self.scaler.keep_boost:
            self.skirts[index] = 0.0  # the scaled network to equalise the skirt itself

    def _select(self, power: np.ndarray, cutoffs_hz: np.ndarray) -> np.ndarray:
        """The tracker's ``scale_selector``: :meth:`rtbwe.rescale.CutoffScaler.select` on
        the long-term spectra (n, bins) and cutoffs (n,) of a detection."""
        return self.scaler.select(len(cutoffs_hz), cutoffs_hz, power, self.lock.extend_below_hz)

    def _boosted_top_hz(self, rows: int) -> float | None:
        """The highest frequency the skirt boost reaches in these rows' windows; None when
        it reaches none. A window the lock passes through (its bandwidth at or above the
        card's extension limit) is not boosted, whatever its held skirt gain says."""
        extended = self.cutoffs_hz[:rows] < self.lock.extend_below_hz
        if extended.all() and self.scaler is None:
            return self.tracker.skirt_top_hz
        return self.tracker.boosted_top_hz(self.skirts[:rows][extended])


def process_offline(audio: np.ndarray, engine: InferenceEngine, window: np.ndarray,
                    hop_samples: int, buffer_size: int, stats: ProcessorStats,
                    sample_rate: int = 48000,
                    lock: bool | float | list | dict | DetectedBandLock = True) -> np.ndarray:
    """Whole-buffer path: audio (channels, n) finite float32 -> y (channels, n), no delay.

    Windows are batched ``max(1, buffer_size // hop_samples)`` per channel per network call.
    """
    channels, n = audio.shape
    window_samples = window.shape[0]
    context = window_samples - hop_samples
    num_frames = (n - 1 + context) // hop_samples + 1
    padded_samples = (num_frames - 1) * hop_samples + window_samples
    padded = np.zeros((channels, padded_samples), np.float32)
    padded[:, context:context + n] = audio
    acc = np.zeros((channels, padded_samples), np.float32)
    weight_sum = np.zeros(padded_samples, np.float32)
    group = max(1, buffer_size // hop_samples)
    frames = np.empty((channels * min(group, num_frames), window_samples), np.float32)
    tracker = make_tracker(engine, channels, sample_rate, window_samples, hop_samples)
    path = WindowPath(engine, tracker, frames.shape[0], lock)
    # the last windows run past the input's end into zeros: an input that stops mid-signal
    # steps there, and the step's click can read as full band in a dark input's spectrum.
    # The output keeps those windows (streaming, fed zeros, sees the same), but ``stats``
    # report the detection of the last window that lies wholly inside the input.
    inside = max(0, (context + n - window_samples) // hop_samples + 1)
    starts = sorted(set(range(0, num_frames, group))
                    | ({inside} if inside < num_frames else set()))
    held = None
    for first, stop in zip(starts, starts[1:] + [num_frames]):
        count = stop - first
        start = first * hop_samples
        kernels.frame_signal(padded, start, hop_samples, count, frames)
        path.run(frames, count, stats)
        kernels.overlap_add(frames, count, window, hop_samples, acc, weight_sum, start)
        if stop == inside:
            held = (stats.input_bandwidth_hz, stats.skirt_boost_hz)
    if held is not None and held[0] is not None:
        stats.input_bandwidth_hz, stats.skirt_boost_hz = held
    out = np.empty((channels, n), np.float32)
    kernels.normalise(acc, weight_sum, context, n, out, 0)
    return out


class StreamState:
    """Preallocated buffers of one stream; :meth:`process` is the per-block hot path.

    Buffers grow (once) when a block longer than any before arrives; otherwise a call
    allocates nothing but the returned array.
    """

    def __init__(self, channels: int, window: np.ndarray, hop_samples: int,
                 block_samples: int = 8192, tracker: SpectrumTracker | None = None,
                 engine: InferenceEngine | None = None,
                 lock: bool | float | list | dict | DetectedBandLock = True):
        self.channels = channels
        self.tracker = tracker
        self.engine, self.lock = engine, lock
        self.window = window
        self.window_samples = window.shape[0]
        self.hop_samples = hop_samples
        self.context_samples = self.window_samples - hop_samples
        self.latency_samples = self.window_samples - 1
        self.capacity = 0
        self._allocate(max(1, block_samples))
        self.clear()

    def _allocate(self, block_samples: int) -> None:
        """Size every buffer for blocks of up to ``block_samples`` samples."""
        w, h, c = self.window_samples, self.hop_samples, self.channels
        max_frames = (block_samples - 1) // h + 1
        old = self.__dict__.copy() if self.capacity else None
        self.inbuf = np.zeros((c, w - 1 + block_samples), np.float32)
        self.frames = np.zeros((c * max_frames, w), np.float32)
        self.path = (WindowPath(self.engine, self.tracker, c * max_frames, self.lock)
                     if self.tracker is not None and self.engine is not None else None)
        self.acc = np.zeros((c, (max_frames - 1) * h + w), np.float32)
        self.weight_sum = np.zeros((max_frames - 1) * h + w, np.float32)
        self.outbuf = np.zeros((c, self.latency_samples + max_frames * h + block_samples),
                               np.float32)
        if old is not None:  # keep the stream's contents when growing
            self.inbuf[:, :self.in_fill] = old["inbuf"][:, :self.in_fill]
            self.acc[:, :self.context_samples] = old["acc"][:, :self.context_samples]
            self.weight_sum[:self.context_samples] = old["weight_sum"][:self.context_samples]
            self.outbuf[:, :self.out_fill] = old["outbuf"][:, :self.out_fill]
        self.capacity = block_samples

    def clear(self) -> None:
        """Back to silence: input history zeros, nothing accumulated, output primed with
        ``latency_samples`` zeros."""
        for buffer in (self.inbuf, self.frames, self.acc, self.weight_sum, self.outbuf):
            buffer.fill(0.0)
        self.in_fill = self.context_samples  # the W - H zeros before x[0]
        self.out_fill = self.latency_samples
        self.discard = self.context_samples  # y[-(W-H):0] is finished first and dropped
        if self.tracker is not None:
            self.tracker.clear()

    def process(self, block: np.ndarray, engine: InferenceEngine,
                stats: ProcessorStats) -> np.ndarray:
        """block (channels, n) float32 C-contiguous -> (channels, n), delayed by
        ``latency_samples``. Non-finite input samples become 0 and are counted; never raises
        on audio content."""
        n = block.shape[1]
        if n > self.capacity:
            self._allocate(n)
        num_frames, self.in_fill, replaced = kernels.ingest_and_frame(
            block, self.inbuf, self.in_fill, self.hop_samples, self.frames)
        stats.nonfinite_input_samples += replaced
        if num_frames:
            if self.path is not None:
                self.path.run(self.frames, num_frames, stats)
            else:
                run_batch(engine, self.frames, self.channels * num_frames, stats)
            skip = min(self.discard, num_frames * self.hop_samples)  # y before t = 0
            self.discard -= skip
            self.out_fill, replaced = kernels.accumulate_and_emit(
                self.frames, num_frames, self.window, self.hop_samples, self.acc,
                self.weight_sum, skip, self.outbuf, self.out_fill)
            stats.nonfinite_output_samples += replaced
        result = np.empty((self.channels, n), np.float32)
        self.out_fill = kernels.pop_front(self.outbuf, self.out_fill, result)
        return result
