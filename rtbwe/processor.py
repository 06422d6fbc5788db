"""``BandwidthExtender``: the block processor, with pedalboard's ``process`` signature.

>>> import numpy as np, torch, rtbwe
>>> bwe = rtbwe.BandwidthExtender(torch.nn.Identity())
>>> x = np.random.default_rng(0).standard_normal((2, 4800)).astype(np.float32)
>>> bool(np.allclose(bwe.process(x, 48000), x, atol=1e-5))         # offline: no delay
True
>>> y = bwe.process(x, 48000, reset=False)                           # streaming: delayed
>>> bool(np.allclose(y[:, bwe.latency_samples:], x[:, :-bwe.latency_samples], atol=1e-5))
True

Data path: input -> ``kernels.frame_signal`` -> engine (all ready windows of all channels as
one batch) -> ``kernels.overlap_add`` / ``kernels.normalise`` -> output; see
:mod:`rtbwe.streaming` for the geometry and why ``latency_samples == window_samples - 1``.
"""
from __future__ import annotations

import contextlib
import math
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import kernels
from .engine import InferenceEngine, load_torchscript
# the card's lock settings; the checks stay importable from here
from .card_lock import (MAX_EXTENSION_GAIN, extension_gains, lock_settings,  # noqa: F401
                        max_added_ratio, rolloff_gate_db)
from .streaming import ProcessorStats, StreamState, make_tracker, process_offline

# Defaults chosen by measurement (benchmarks/test_window.py, test_streaming.py; numbers in
# benchmarks/README.md): 1024 / 512 samples at 48 kHz instead of the paper's 960 / 480.
# Power-of-two windows keep every ARUNet level even (1024 / 64 = 16 at the bottleneck), which
# made arunet-small faster per second of audio (eager RT 0.23 vs 0.27, 1 thread) and lowered
# the window-edge error (-62 vs -54 dB) for 1.3 ms more latency (21.3 ms, goal <= 25 ms).
DEFAULT_WINDOW_MS = 1000 * 1024 / 48000  # 21.33 ms
# Hop 3/4 of the window (768 samples, 16 ms) since issue 14: within 0.02 dB ΔSNR of hop 512
# on every matrix row in two runs (docs/results/matrix-modes.md), a third fewer network calls.
DEFAULT_HOP_MS = 1000 * 768 / 48000      # 16.0 ms
# low-latency mode (`--low-latency`): 448 / 224 samples at 48 kHz, 9.31 ms algorithmic latency;
# about 1.5x the compute per second, -0.2 dB ΔSNR at most on the demo clip (benchmarks/README.md)
LOW_LATENCY_WINDOW_MS = 1000 * 448 / 48000  # 9.33 ms
LOW_LATENCY_HOP_MS = 1000 * 224 / 48000     # 4.67 ms
DEFAULT_SAMPLE_RATE = 48000
MAX_CHANNELS = 8
RATE_RANGE_HZ = (8000, 192000)  # what rtbwe.extend and `rtbwe process` accept
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
PASSBAND_MODES = ("detected", "free")


def resolve_model(model: str | Path | nn.Module, sample_rate: int | None
                  ) -> tuple[nn.Module, int]:
    """Turn a name, path or module into ``(module, model_sample_rate)``.

    * ``nn.Module``: used as is; rate from ``model.card["sample_rate"]`` if it has a card.
    * a shipped weights name (``"default"``) or a ``.json``/``.safetensors`` path:
      :func:`rtbwe.load_model`; the rate comes from the model card.
    * a ``.pt``/``.ts`` TorchScript file from :func:`rtbwe.engine.export_torchscript`.
    * a registry name from :func:`rtbwe.models.names` (``"arunet-small"``): built with random
      weights, with a warning - useful for timing, not for listening.
    """
    from . import models, weights

    card_rate = None
    if isinstance(model, nn.Module):
        card = getattr(model, "card", None)
        card_rate = card.get("sample_rate") if isinstance(card, dict) else None
        module = model
    elif not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a name, a path or a torch.nn.Module, got "
                        f"{type(model).__name__}")
    elif str(model) in models.names() and str(model) not in weights.SHIPPED:
        warnings.warn(f"model {str(model)!r} is a registry architecture with random weights; "
                      "its output is not bandwidth-extended audio. Pass model='default' or a "
                      "trained .json/.safetensors path for real use.", UserWarning, stacklevel=3)
        module = models.build(str(model))
    elif Path(str(model)).suffix in TORCHSCRIPT_SUFFIXES:
        module, meta = load_torchscript(model)
        card_rate = meta.get("sample_rate")
    else:
        module = weights.load_model(model)
        card_rate = module.card.get("sample_rate")  # type: ignore[union-attr]
    if card_rate is not None and sample_rate is not None and int(card_rate) != int(sample_rate):
        raise ValueError(f"this model was trained at {card_rate} Hz but sample_rate="
                         f"{sample_rate} was passed; leave sample_rate out or pass {card_rate}")
    rate = int(card_rate or sample_rate or DEFAULT_SAMPLE_RATE)
    return module, rate


def as_channels_first(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    """Validate and convert ``audio`` to float32 C-contiguous ``(channels, samples)``.

    Returns the array and whether the caller passed a 1-D ``(samples,)`` array.
    int16/int32 are scaled to [-1, 1); float64 is cast. Anything else raises ValueError.
    """
    if not isinstance(audio, np.ndarray):
        raise ValueError(f"audio must be a numpy array, got {type(audio).__name__}; pass "
                         "np.asarray(audio, dtype=np.float32) shaped (channels, samples)")
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    elif audio.dtype == np.int32:
        audio = audio.astype(np.float32) / 2147483648.0
    elif audio.dtype in (np.float64, np.float16):
        audio = audio.astype(np.float32)
    elif audio.dtype != np.float32:
        raise ValueError(f"audio dtype {audio.dtype} is not supported; pass float32 (or "
                         "float64/int16/int32, which are converted)")
    mono = audio.ndim == 1
    if mono:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape "
                         f"{audio.shape}")
    if audio.shape[0] > MAX_CHANNELS:
        hint = ("; it looks like (samples, channels): pass audio.T" if
                audio.shape[1] <= MAX_CHANNELS else "")
        raise ValueError(f"audio has {audio.shape[0]} channels (shape {audio.shape}); pass "
                         f"(channels, samples) with at most {MAX_CHANNELS} channels{hint}")
    return np.ascontiguousarray(audio), mono


def check_sample_rate(sample_rate: float) -> float:
    """``sample_rate`` as a float if it is a finite number of Hz in 8-192 kHz, else ValueError."""
    ok = isinstance(sample_rate, (int, float, np.integer, np.floating)) and not isinstance(
        sample_rate, bool) and math.isfinite(sample_rate)
    if not ok or not RATE_RANGE_HZ[0] <= sample_rate <= RATE_RANGE_HZ[1]:
        raise ValueError(f"sample_rate must be a number of Hz from {RATE_RANGE_HZ[0]} to "
                         f"{RATE_RANGE_HZ[1]}, got {sample_rate!r}")
    return float(sample_rate)


def check_buffer_size(buffer_size: int) -> int:
    """``buffer_size`` as an int if it is a whole number of samples >= 1, else ValueError."""
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, (int, np.integer)) \
            or buffer_size < 1:
        raise ValueError(f"buffer_size must be a whole number of samples >= 1 (default 8192), "
                         f"got {buffer_size!r}")
    return int(buffer_size)


def first_nonfinite(audio: np.ndarray) -> tuple[int, int] | None:
    """(channel, sample) of the earliest NaN/Inf in (channels, samples) audio, or None."""
    bad = ~np.isfinite(audio)
    if not bad.any():
        return None
    sample = int(np.argmax(bad.any(axis=0)))
    return int(np.argmax(bad[:, sample])), sample


class BandwidthExtender:
    """Band-limited audio in, full-band audio out, offline or block by block.

    Args:
        model: ``"default"`` (shipped weights), a weights/TorchScript path, a registry name
            (random weights, warns), or any ``nn.Module`` mapping (batch, 1, n) -> (batch, 1, n).
        sample_rate: rate the model runs at; defaults to the model card's, else 48000.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        window_ms, hop_ms: analysis window and hop; defaults 21.33 / 16.0 ms (1024 / 768
            samples at 48 kHz, chosen by measurement; 1024 / 512 and the paper's 20 / 10 ms
            also work).
        num_threads: torch intra-op threads (process-wide); None keeps torch's setting.
        backend: ``"auto"`` (cuda-graph on CUDA; on CPU onnx when ``rtbwe[fast]`` is
            installed, else eager), ``"eager"``, ``"torchscript"``, ``"onnx"`` or ``"cuda-graph"``.
        keep_below_hz: keep the input's passband below this fixed frequency: the output is
            the input there, only the band above comes from the network
            (:mod:`rtbwe.passband`). None (default): follow ``passband``.
        passband: ``"detected"`` (default): the output keeps the input below its detected
            bandwidth (:mod:`rtbwe.bandwidth`), window by window, and a full-band input
            comes out unchanged; the network fills only what is missing. ``"free"``: the
            network's output as is (it may also change the passband, as models trained
            before the detection did). No added latency either way.
        skip_full_band: with ``passband="detected"``, hops whose windows all come out as
            they went in (full band, or bandwidth not yet known) skip the network (default);
            False runs it anyway, for a constant cost per hop (benchmarks). Same output.
        skirt_boost: with ``passband="detected"``, boost a gentle filter's attenuated band
            above the detected bandwidth back up (:mod:`rtbwe.skirt`). None (default): as the
            model card says (``skirt_eq``; on in the shipped default, whose gains were fitted
            with it); True / False: on / off. How much is boosted: the card's learned
            estimate (``skirt_model``, :mod:`rtbwe.skirt_model`, as in the card
            ``default-learned-skirt``), else the trend rule of :mod:`rtbwe.skirt`.

    Attributes: ``latency_samples`` (= window_samples - 1), ``latency_ms``, ``window_samples``,
    ``hop_samples``, ``sample_rate``, ``stats`` (a :class:`ProcessorStats` copy),
    ``input_bandwidth_hz`` (the detected bandwidth of the last audio, None until known).

    Threads: one extender holds one stream, used from one thread at a time. ``process``,
    ``reset`` and ``prepare`` hold a lock; a call that finds it held by another thread raises
    RuntimeError (it never waits). For several streams or threads, make one extender each;
    they can share the network: ``BandwidthExtender(other.engine.model)``. Calls from threads
    that never overlap in time are allowed (a stream may move to another thread); they look
    like one stream, so do not interleave two streams on one object.
    """

    def __init__(self, model: str | Path | nn.Module = "default", sample_rate: int | None = None,
                 device: str = "auto", window_ms: float = DEFAULT_WINDOW_MS,
                 hop_ms: float = DEFAULT_HOP_MS, num_threads: int | None = None,
                 backend: str = "auto", keep_below_hz: float | None = None,
                 passband: str = "detected", skip_full_band: bool = True,
                 skirt_boost: bool | None = None):
        if passband not in PASSBAND_MODES:
            raise ValueError(f"passband must be one of {', '.join(PASSBAND_MODES)}, got "
                             f"{passband!r}")
        module, self.sample_rate = resolve_model(model, sample_rate)
        self.keep_below_hz = None if keep_below_hz is None else float(keep_below_hz)
        if self.keep_below_hz is not None:
            from .passband import PassbandLock

            module = PassbandLock(module, self.sample_rate, self.keep_below_hz)
        self.passband = "fixed" if self.keep_below_hz is not None else passband
        # the detected-band lock, with the card's calibrated gain on the added band
        settings = lock_settings(getattr(module, "card", None), skip_full_band)
        if skirt_boost is not None:
            settings["skirt_eq"] = bool(skirt_boost)
        self.extension_gain, self.max_added_ratio = settings["gain"], settings["max_added_ratio"]
        self.rolloff_gate_db, self.skirt_eq = settings["rolloff_gate_db"], settings["skirt_eq"]
        self.skirt_model = settings["skirt_model"] if self.skirt_eq else None
        self.cutoff_scaling = settings["cutoff_scaling"]
        self._band_lock = settings if self.passband == "detected" else False
        self.window_samples = int(round(window_ms * self.sample_rate / 1000))
        self.hop_samples = int(round(hop_ms * self.sample_rate / 1000))
        if not 0 < self.hop_samples <= self.window_samples:
            raise ValueError(f"need 0 < hop_ms <= window_ms with at least one sample each, got "
                             f"window_ms={window_ms}, hop_ms={hop_ms} at {self.sample_rate} Hz")
        self.window = kernels.synthesis_window(self.window_samples, self.hop_samples)
        self.engine = InferenceEngine(module, self.window_samples, device, backend, num_threads)
        kernels.warm_up()
        for rows in (1, 2):  # mono and stereo hops: the first audio block pays no set-up
            self.engine.warm_up(rows)
        self._stats = ProcessorStats()
        self._stream: StreamState | None = None
        self._fresh = True
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _exclusive(self, what: str):
        """Hold the lock for one call; raise RuntimeError if another thread holds it."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"BandwidthExtender.{what}() was called while another thread is "
                               "inside this extender; one extender serves one stream from one "
                               "thread at a time. Use one extender per thread or stream "
                               "(BandwidthExtender(other.engine.model) shares the network)")
        try:
            yield
        finally:
            self._lock.release()

    @property
    def latency_samples(self) -> int:
        """Delay of streaming output, in samples at ``sample_rate``."""
        return self.window_samples - 1

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    @property
    def backend(self) -> str:
        return self.engine.backend

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def input_bandwidth_hz(self) -> float | None:
        """The input's detected bandwidth in Hz (:mod:`rtbwe.bandwidth`; the widest channel's,
        Nyquist for full band), from the last audio processed; None until 0.25 s of
        non-silent audio has been seen (rtbwe.tracker.MIN_HISTORY_S)."""
        return self._stats.input_bandwidth_hz

    @property
    def stats(self) -> ProcessorStats:
        return replace(self._stats)

    def reset(self) -> None:
        """Forget the stream: the next ``reset=False`` block starts from silence."""
        with self._exclusive("reset"):
            self._reset()

    def _reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()
        self._fresh = True  # the next stream may have another channel count

    def prepare(self, channels: int, block_samples: int) -> None:
        """Allocate streaming buffers for ``channels`` and blocks up to ``block_samples`` now,
        so the first audio callback does not (optional)."""
        with self._exclusive("prepare"):
            self._prepare(channels, block_samples)

    def _prepare(self, channels: int, block_samples: int) -> None:
        if self._stream is None or self._stream.channels != channels:
            self._stream = self._new_stream(channels, block_samples)
        elif block_samples > self._stream.capacity:
            self._stream._allocate(block_samples)
        frames = (block_samples - 1) // self.hop_samples + 1
        self.engine.warm_up(rows=channels * frames)

    def _new_stream(self, channels: int, block_samples: int) -> StreamState:
        tracker = make_tracker(self.engine, channels, self.sample_rate, self.window_samples,
                               self.hop_samples)
        return StreamState(channels, self.window, self.hop_samples, block_samples, tracker,
                           self.engine, self._band_lock)

    def _check_rate(self, sample_rate: float) -> None:
        if sample_rate != self.sample_rate:
            raise ValueError(f"this model runs at {self.sample_rate} Hz, got sample_rate="
                             f"{sample_rate}; resample the input to {self.sample_rate} Hz "
                             "first (rtbwe.extend() and `rtbwe process` do it for you)")

    def process(self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192,
                reset: bool = True) -> np.ndarray:
        """Extend ``input_array`` float32 (channels, samples) or (samples,); same layout out.

        ``reset=True``: whole buffer, latency compensated, same length; NaN/Inf raises.
        ``reset=False``: one block of a stream; same length out, delayed by
        ``latency_samples``; NaN/Inf become zeros (counted in ``stats``), never raises on
        audio content. ``buffer_size`` bounds the samples per network batch in both modes: a
        streamed block longer than it runs as consecutive sub-blocks of ``buffer_size``
        samples (the same output, since streaming does not depend on block sizes).
        Raises RuntimeError if another thread is inside this extender (see the class doc).
        """
        self._check_rate(sample_rate)
        buffer_size = check_buffer_size(buffer_size)
        audio, mono = as_channels_first(input_array)
        with self._exclusive("process"):
            out = self._process(audio, buffer_size, reset)
        return out[0] if mono else out

    def _process(self, audio: np.ndarray, buffer_size: int, reset: bool) -> np.ndarray:
        channels, n = audio.shape
        self._stats.blocks += 1
        self._stats.input_samples += n
        if reset:
            self._reset()
            bad = first_nonfinite(audio)
            if bad is not None:
                raise ValueError(f"input has NaN/Inf at sample {bad[1]} (channel {bad[0]}); "
                                 "clean it first (e.g. np.nan_to_num) or stream it with "
                                 "reset=False, which replaces such samples with zeros")
            return (process_offline(audio, self.engine, self.window, self.hop_samples,
                                    buffer_size, self._stats, self.sample_rate,
                                    self._band_lock)
                    if n else audio.copy())
        if self._stream is None or (self._fresh and self._stream.channels != channels):
            self._stream = self._new_stream(channels, min(n, buffer_size))
        elif self._stream.channels != channels:
            raise ValueError(f"this stream has {self._stream.channels} channel(s) but the "
                             f"block has {channels}; call reset() or pass reset=True "
                             "before changing the channel count")
        self._fresh = False
        if n <= buffer_size:
            return self._stream.process(audio, self.engine, self._stats)
        out = np.empty_like(audio)
        for start in range(0, n, buffer_size):
            stop = min(start + buffer_size, n)
            out[:, start:stop] = self._stream.process(np.ascontiguousarray(audio[:, start:stop]),
                                                      self.engine, self._stats)
        return out

    __call__ = process

    def __repr__(self) -> str:
        return (f"BandwidthExtender(sample_rate={self.sample_rate}, window_samples="
                f"{self.window_samples}, hop_samples={self.hop_samples}, latency_samples="
                f"{self.latency_samples}, backend={self.backend!r}, device='{self.device}'"
                + ("" if self.keep_below_hz is None else f", keep_below_hz={self.keep_below_hz:g}")
                + ("" if self.passband != "free" else ", passband='free'")
                + ")")


def resample(audio: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Resample (channels, n) float32 with pedalboard's latency-compensated StreamResampler;
    the result has exactly ``round(n * target_rate / source_rate)`` samples."""
    if source_rate == target_rate:
        return audio
    from pedalboard.io import StreamResampler

    resampler = StreamResampler(float(source_rate), float(target_rate), audio.shape[0])
    out = np.concatenate([resampler.process(np.ascontiguousarray(audio)), resampler.process()],
                         axis=1)
    length = int(round(audio.shape[1] * target_rate / source_rate))
    if out.shape[1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[1])))
    return np.ascontiguousarray(out[:, :length], dtype=np.float32)


def extend(audio: np.ndarray, sample_rate: float, model: str | Path | nn.Module = "default",
           **options) -> np.ndarray:
    """Offline convenience: audio (channels, n) or (n,) at any ``sample_rate`` -> extended
    audio at the model's rate (48 kHz for shipped models), same duration and layout.

    ``options`` go to :class:`BandwidthExtender` (``device``, ``backend``, ``window_ms``...).
    ``sample_rate`` must be 8-192 kHz, as for ``rtbwe process``.
    """
    check_sample_rate(sample_rate)
    signal, mono = as_channels_first(audio)
    bwe = BandwidthExtender(model, **options)
    bad = first_nonfinite(signal)
    if bad is not None:
        raise ValueError(f"input has NaN/Inf at sample {bad[1]} (channel {bad[0]}); clean it "
                         "first (e.g. np.nan_to_num)")
    signal = resample(signal, sample_rate, bwe.sample_rate)
    out = bwe.process(signal, bwe.sample_rate)
    return out[0] if mono else out
