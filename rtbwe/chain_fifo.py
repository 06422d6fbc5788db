"""Constant-latency streaming for native pedalboard groups with latency.

``pedalboard`` plugins with latency (``Resample``, ``GSMFullRateCompressor``, ``MP3Compressor``,
possibly hosted VST3/AU plugins) return fewer samples than they receive when streaming with
``reset=False``. The returned samples are aligned with the input (the stream just lags), but the
lag depends on the sequence of block sizes. :class:`FixedBlockStage` makes it constant::

    input ──▶ in FIFO ──(blocks of exactly K)──▶ Pedalboard ──▶ out FIFO ──▶ same count out
                                                                 ▲
                                                   pre-filled with D_K + K - 1 zeros

``D_K`` is the largest lag the group shows when fed blocks of ``K`` samples, measured once by
priming it with silence (then the group is reset). At most ``K - 1`` samples wait in the input
FIFO, so the out FIFO never runs dry and the output is the group's output delayed by exactly
``latency_samples = D_K + K - 1``. A group whose ``D_K`` is 0 runs pass-through.

pedalboard's ``GSMFullRateCompressor`` returns garbled, misaligned audio when fed blocks under
1024 samples (its content lag then depends on the signal), so ``K`` is at least
:data:`MIN_BLOCK_SAMPLES` for groups that hold one.
"""
from __future__ import annotations

import numpy as np
import pedalboard

__all__ = ["FixedBlockStage", "SampleFifo", "is_latent", "min_block_samples",
           "LATENT_PLUGIN_TYPES", "MIN_BLOCK_SAMPLES"]

# Native plugin classes that may return fewer samples than given when streaming.
LATENT_PLUGIN_TYPES = ("Resample", "GSMFullRateCompressor", "MP3Compressor", "VST3Plugin",
                       "AudioUnitPlugin", "ExternalPlugin")

# Smallest fixed block size a plugin type streams correctly with (measured, pedalboard 0.9.26).
MIN_BLOCK_SAMPLES = {"GSMFullRateCompressor": 1024}

PROBE_MIN_SAMPLES = 16384
PROBE_STABLE_SAMPLES = 8192
PROBE_MAX_SAMPLES = 1 << 21


def is_latent(plugin: pedalboard.Plugin) -> bool:
    """True if ``plugin`` (or any plugin nested in a Pedalboard/Chain/Mix) may have latency."""
    if type(plugin).__name__ in LATENT_PLUGIN_TYPES:
        return True
    try:
        children = list(plugin)  # containers are iterable
    except TypeError:
        return False
    return any(is_latent(child) for child in children)


def channels_first(out: np.ndarray, num_channels: int) -> np.ndarray:
    """pedalboard's output as ``(num_channels, n)``: it returns an empty stereo result as
    ``(0, 1)``, and may guess channels-last for blocks shorter than the channel count."""
    out = np.asarray(out)
    if out.size == 0:
        return np.zeros((num_channels, 0), np.float32)
    if out.ndim == 1:
        return out[None, :]
    if out.shape[0] != num_channels and out.shape[1] == num_channels:
        return out.T
    return out


def check_block_shape(x: np.ndarray) -> None:
    """Refuse a multichannel block pedalboard would misread as channels-last."""
    channels, n = x.shape
    if 1 < channels and n <= channels:
        raise ValueError(f"a streamed block of {n} samples with {channels} channels is ambiguous "
                         "to pedalboard (it may read it as channels-last); stream blocks longer "
                         "than the channel count, or set Chain(internal_block_size=...) and put "
                         "a latent plugin in the group")


def min_block_samples(plugin: pedalboard.Plugin) -> int:
    """Smallest fixed block size ``plugin`` (and anything nested in it) streams correctly with."""
    own = MIN_BLOCK_SAMPLES.get(type(plugin).__name__, 1)
    try:
        children = list(plugin)
    except TypeError:
        return own
    return max([own, *(min_block_samples(child) for child in children)])


class SampleFifo:
    """Growable first-in first-out buffer of float32 ``(channels, samples)`` (offline use)."""

    def __init__(self, num_channels: int, capacity_samples: int = 1024) -> None:
        self._buf = np.zeros((num_channels, max(1, capacity_samples)), np.float32)
        self._start = 0
        self._stop = 0

    def __len__(self) -> int:
        return self._stop - self._start

    def push(self, x: np.ndarray) -> None:
        """Append ``x`` float32 ``(channels, n)``."""
        n = x.shape[1]
        if self._stop + n > self._buf.shape[1]:
            live = len(self)
            if live + n > self._buf.shape[1] // 2:
                grown = np.zeros((self._buf.shape[0], 2 * (live + n)), np.float32)
                grown[:, :live] = self._buf[:, self._start:self._stop]
                self._buf = grown
            else:
                self._buf[:, :live] = self._buf[:, self._start:self._stop]
            self._start, self._stop = 0, live
        self._buf[:, self._stop:self._stop + n] = x
        self._stop += n

    def push_zeros(self, n: int) -> None:
        self.push(np.zeros((self._buf.shape[0], n), np.float32))

    def pop(self, n: int) -> np.ndarray:
        """Remove and return the oldest ``n`` samples as a new ``(channels, n)`` array."""
        if n > len(self):
            raise RuntimeError(f"FIFO holds {len(self)} samples, {n} requested")
        out = self._buf[:, self._start:self._start + n].copy()
        self._start += n
        return out


class FixedBlockStage:
    """Wrap a native ``Pedalboard`` with latency so streaming keeps counts and alignment.

    ``process(x, sample_rate, buffer_size, reset)`` follows pedalboard; with ``reset=False`` it
    returns exactly as many samples as given, delayed by :attr:`latency_samples`. Call
    :meth:`prepare` first (``rtbwe.Chain`` does).
    """

    def __init__(self, board: pedalboard.Pedalboard) -> None:
        self.board = board
        self.block_size: int | None = None
        self.lag_samples: int | None = None  # D_K
        self._in: SampleFifo | None = None
        self._out: SampleFifo | None = None
        self._key: tuple[float, int] | None = None

    def measure_lag(self, sample_rate: float, num_channels: int, block_size: int) -> int:
        """Largest lag ``D_K`` (input minus output count) over a primed run of silence in blocks
        of ``block_size``. Resets the board before and after."""
        zeros = np.zeros((num_channels, block_size), np.float32)
        self.board.reset()
        total_in = total_out = max_lag = 0
        last_change = 0
        while True:
            out = self.board.process(zeros, sample_rate, buffer_size=block_size, reset=False)
            total_in += block_size
            total_out += channels_first(out, num_channels).shape[1]
            lag = total_in - total_out
            if lag > max_lag:
                max_lag, last_change = lag, total_in
            if (total_in >= PROBE_MIN_SAMPLES + 4 * block_size and total_in - last_change
                    >= max(PROBE_STABLE_SAMPLES, 8 * block_size, 2 * max_lag)):
                break
            if total_in > PROBE_MAX_SAMPLES:
                raise RuntimeError(f"{self.board} kept falling behind for {total_in} samples of "
                                   "silence; it cannot be streamed with a fixed latency")
        self.board.reset()
        return max_lag

    def prepare(self, sample_rate: float, num_channels: int, block_size: int) -> None:
        """Measure ``D_K`` for ``block_size`` (= K) and set up the FIFOs."""
        key = (float(sample_rate), int(num_channels))
        # pedalboard cannot tell (channels, n) from (n, channels) when n <= channels
        floor = num_channels + 1 if num_channels > 1 else 1
        block_size = max(int(block_size), min_block_samples(self.board), floor)
        if key == self._key and block_size == self.block_size:
            self.reset()
            return
        self.block_size = block_size
        self.lag_samples = self.measure_lag(sample_rate, num_channels, self.block_size)
        self._key = key
        self.reset()

    @property
    def passthrough(self) -> bool:
        return self.lag_samples == 0

    @property
    def latency_samples(self) -> int:
        if self.lag_samples is None:
            raise RuntimeError("the latency of a chain with Resample/GSM/MP3 plugins is measured "
                               "when streaming starts: call chain.prepare(sample_rate, "
                               "num_channels, block_size) or stream a first block with "
                               "reset=False before reading latency_samples")
        return 0 if self.passthrough else self._fifo_samples

    @property
    def _fifo_samples(self) -> int:
        return self.lag_samples + self.block_size - 1

    def reset(self) -> None:
        self.board.reset()
        if self._key is not None and not self.passthrough:
            channels = self._key[1]
            self._in = SampleFifo(channels, 2 * self.block_size)
            self._out = SampleFifo(channels, 2 * (self._fifo_samples + self.block_size))
            self._out.push_zeros(self._fifo_samples)

    def process(self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """``input_array`` float32 ``(channels, n)`` -> ``(channels, n)``."""
        if reset:
            return self.board.process(input_array, sample_rate, buffer_size=buffer_size,
                                      reset=True)
        if self._key is None:
            raise RuntimeError("call prepare(sample_rate, num_channels, block_size) before "
                               "streaming through a FixedBlockStage")
        channels = input_array.shape[0]
        if self.passthrough:
            check_block_shape(input_array)
            return channels_first(self.board.process(input_array, sample_rate,
                                                     buffer_size=buffer_size, reset=False),
                                  channels)
        assert self._in is not None and self._out is not None
        k = self.block_size
        self._in.push(input_array)
        while len(self._in) >= k:
            out = self.board.process(self._in.pop(k), sample_rate, buffer_size=k, reset=False)
            self._out.push(channels_first(out, channels))
        return self._out.pop(input_array.shape[1])
