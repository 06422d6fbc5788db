"""Measurements shared by ``benchmarks/`` (pytest-benchmark) and ``rtbwe bench``.

* :func:`time_streaming` - per-call wall time (p50/p99) of ``process(block, reset=False)``
  and the streaming RT factor (compute time / audio time), for one extender and block size.
* :func:`time_kernels` - the hot-path kernel sequence of one streaming call, Numba vs the
  NumPy reference, in microseconds.
* :func:`edge_error_db` - how far windowed overlap-add output is from running the network on
  the whole signal at once (the quality cost of window edges), used to choose window/hop.
* :func:`window_quality` - with trained weights: the ΔSNR a window/hop geometry delivers on
  real music (the bundled demo clip), seen and unseen filter, averaged over hop-grid phases.

Shipped names (``default``) time the real model; registry models are built with random weights
(timings do not depend on the weights).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import filters, kernels
from .kernels import reference
from .processor import DEFAULT_HOP_MS, DEFAULT_WINDOW_MS, BandwidthExtender


@dataclass(frozen=True)
class StreamTiming:
    model: str
    backend: str
    num_threads: int
    channels: int
    block_samples: int
    block_ms: float        # audio duration of one block: the real-time budget per call
    p50_ms: float          # median wall time of one process() call
    p99_ms: float
    max_ms: float
    rt_factor: float       # total compute time / audio duration (< 1 keeps up)
    latency_ms: float      # algorithmic latency (window - 1 sample)
    calls: int


def cpu_backends() -> list[str]:
    """The CPU backends this install can run: eager, torchscript and, with ``rtbwe[fast]``,
    onnx (what ``rtbwe bench`` times by default)."""
    from .engine_onnx import onnx_missing

    return ["eager", "torchscript"] + ([] if onnx_missing() else ["onnx"])


def runtime_versions() -> str:
    """``torch X`` and, when installed, ``onnxruntime Y``."""
    try:
        import onnxruntime
        return f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    except ImportError:
        return f"torch {torch.__version__}"


def build_extender(model: str, backend: str = "eager", num_threads: int = 1,
                   window_ms: float = DEFAULT_WINDOW_MS, hop_ms: float = DEFAULT_HOP_MS,
                   seed: int = 0, keep_below_hz: float | None = None,
                   skip_full_band: bool = False) -> BandwidthExtender:
    """An extender around ``model``: a shipped name (``default``: its real weights, conditioning
    and all) or a registry name (random weights, warning silenced; timings do not depend on
    the weights). The network runs on every window, full-band noise included
    (``skip_full_band=False``): the timings are those of band-limited input, the worst case;
    ``skip_full_band=True`` times what the library does by default."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return BandwidthExtender(model, device="cpu", backend=backend, num_threads=num_threads,
                                 window_ms=window_ms, hop_ms=hop_ms,
                                 keep_below_hz=keep_below_hz, skip_full_band=skip_full_band)


def time_streaming(bwe: BandwidthExtender, block_samples: int, seconds: float = 5.0,
                   channels: int = 1, model: str = "?", warmup_calls: int = 10,
                   paced: bool = False) -> StreamTiming:
    """Stream ``seconds`` of noise through ``bwe`` in blocks of ``block_samples``: flat out
    (each call as soon as the last one returns), or ``paced``, each call when its block of
    audio would have arrived, sleeping in between as a live stream does (on a small VM the
    paced calls cost more, largely because the core idles and goes cold between them)."""
    rate = bwe.sample_rate
    rng = np.random.default_rng(0)
    calls = max(1, int(seconds * rate) // block_samples)
    audio = (0.1 * rng.standard_normal((channels, block_samples * (calls + warmup_calls))))
    audio = audio.astype(np.float32)
    bwe.reset()
    bwe.prepare(channels, block_samples)
    times = np.empty(calls)
    for i in range(warmup_calls):
        bwe.process(audio[:, i * block_samples:(i + 1) * block_samples], rate, reset=False)
    started = time.perf_counter()
    for i in range(calls):
        start = (warmup_calls + i) * block_samples
        block = audio[:, start:start + block_samples]
        if paced:  # the moment this block's audio would be complete
            wait_s = started + (i + 1) * block_samples / rate - time.perf_counter()
            if wait_s > 0:
                time.sleep(wait_s)
        begun = time.perf_counter()
        bwe.process(block, rate, reset=False)
        times[i] = time.perf_counter() - begun
    return StreamTiming(
        model=model, backend=bwe.backend, num_threads=bwe.engine.num_threads or
        torch.get_num_threads(), channels=channels, block_samples=block_samples,
        block_ms=1000 * block_samples / rate, p50_ms=1000 * float(np.percentile(times, 50)),
        p99_ms=1000 * float(np.percentile(times, 99)), max_ms=1000 * float(times.max()),
        rt_factor=float(times.sum() / (calls * block_samples / rate)),
        latency_ms=bwe.latency_ms, calls=calls)


class InterleavedStreams:
    """Several extenders streaming side by side, one hop-sized block of noise at -20 dBFS each
    per round (:meth:`one_round`), so a moving machine load spreads over all of them alike.

    ``extenders``: name -> BandwidthExtender; ``channels``: (channels, hop) blocks; 16 blocks
    per extender, drawn with ``seed``, repeated. ``lowpass_hz``: the noise is low-passed there
    by a zero-phase Butterworth 6's magnitude response (on the rfft bins of the 16 blocks as
    one periodic signal, so the repeats join without a click; the detected-band lock and its
    skirt boost work on every window; a brick wall before the tenth session, which left the
    boost out); None: full band, which the lock passes through."""

    def __init__(self, extenders: dict[str, BandwidthExtender], channels: int,
                 sample_rate: int, seed: int, lowpass_hz: float | None = None):
        self.extenders, self.sample_rate = extenders, sample_rate
        rng = np.random.default_rng(seed)
        self.feeds = {}
        for name, bwe in extenders.items():
            hop = bwe.hop_samples
            blocks = [0.1 * rng.standard_normal((channels, hop)) for _ in range(16)]
            if lowpass_hz is not None:
                spectrum = np.fft.rfft(np.concatenate(blocks, axis=1), axis=-1)
                freqs_hz = np.fft.rfftfreq(16 * hop, 1.0 / sample_rate)
                spectrum *= 10 ** (filters.zero_phase_response_db(
                    sample_rate, lowpass_hz, "butter", 6, freqs_hz) / 20)
                joined = np.fft.irfft(spectrum, 16 * hop, axis=-1)
                joined *= 0.1 / np.sqrt(np.mean(joined ** 2))
                blocks = np.split(joined, 16, axis=1)
            self.feeds[name] = [np.ascontiguousarray(b, dtype=np.float32) for b in blocks]
        for bwe in extenders.values():
            bwe.prepare(channels, bwe.hop_samples)
        self.times: dict[str, list[float]] = {name: [] for name in extenders}
        self.step = 0

    def one_round(self) -> None:
        for name, bwe in self.extenders.items():
            block = self.feeds[name][self.step % 16]
            begun = time.perf_counter()
            bwe.process(block, self.sample_rate, reset=False)
            self.times[name].append(time.perf_counter() - begun)
        self.step += 1

    def paced(self, seconds: float, warmup_s: float = 0.6) -> dict[str, list[float]]:
        """Stream every extender in real time, as a live worker does: each block is processed
        when its hop of audio has arrived (the earliest due first), and the thread sleeps until
        the next one is due. :meth:`one_round` instead runs flat out, one call after another,
        which keeps the core and its caches warm and makes the thread one more busy loop to
        the scheduler; sleeping between hops changes both (benchmarks/README.md, eleventh
        session: on the 2-core VM a paced call cost 1.4-2.5x a flat-out one). Appends each
        call's seconds to :attr:`times` (after ``warmup_s``); returns name -> each call's
        seconds from the moment its block was due to the call's end (the response time;
        larger than the call when an earlier call ran late)."""
        names = list(self.extenders)
        hops_s = [self.extenders[n].hop_samples / self.sample_rate for n in names]
        counts = [0] * len(names)
        responses: dict[str, list[float]] = {name: [] for name in names}
        start = time.perf_counter() + 0.01
        while True:
            i = min(range(len(names)), key=lambda k: (counts[k] + 1) * hops_s[k])
            due = start + (counts[i] + 1) * hops_s[i]
            if due - start > warmup_s + seconds:
                return responses
            wait_s = due - time.perf_counter()
            if wait_s > 0:
                time.sleep(wait_s)
            bwe, name = self.extenders[names[i]], names[i]
            begun = time.perf_counter()
            bwe.process(self.feeds[name][counts[i] % 16], self.sample_rate, reset=False)
            ended = time.perf_counter()
            counts[i] += 1
            if due - start > warmup_s:
                self.times[name].append(ended - begun)
                responses[name].append(ended - due)

    def figures(self, name: str, skip_rounds: int) -> dict[str, float]:
        """One extender's calls after ``skip_rounds``: RT factor, p50 / p99 / max ms per
        call, the hop and the latency in ms."""
        bwe = self.extenders[name]
        values = np.asarray(self.times[name][skip_rounds:])
        return {"rt": float(values.sum() / (len(values) * bwe.hop_samples / self.sample_rate)),
                "p50_ms": 1e3 * float(np.percentile(values, 50)),
                "p99_ms": 1e3 * float(np.percentile(values, 99)),
                "max_ms": 1e3 * float(values.max()),
                "hop_ms": 1e3 * bwe.hop_samples / self.sample_rate,
                "latency_ms": bwe.latency_ms}

    def time_lock_applies(self) -> dict[str, list[float]]:
        """Wrap each prepared extender's lock ``apply`` to record its seconds per call: name ->
        the list it appends to."""
        times: dict[str, list[float]] = {name: [] for name in self.extenders}
        for name, bwe in self.extenders.items():
            lock = bwe._stream.path.lock

            def timed(*call, apply=lock.apply, record=times[name].append):
                begun = time.perf_counter()
                apply(*call)
                record(time.perf_counter() - begun)
            lock.apply = timed
        return times

    def report(self, rounds: int, lock_times: dict[str, list[float]],
               warmup_rounds: int = 100) -> None:
        """Run ``warmup_rounds`` then ``rounds`` rounds; print the 1-minute load and, per
        extender, its RT factor, p50 / p99 per call and its lock's time per call."""
        for _ in range(warmup_rounds):
            self.one_round()
        for values in lock_times.values():
            values.clear()
        load = os.getloadavg()[0]
        for _ in range(rounds):
            self.one_round()
        print(f"{rounds} rounds, 1-minute load {load:.2f} -> {os.getloadavg()[0]:.2f}")
        for name in self.extenders:
            figures = self.figures(name, warmup_rounds)
            apply_us = 1e6 * np.asarray(lock_times[name])
            print(f"{name:>14s}: RT {figures['rt']:.4f}, p50 {figures['p50_ms']:.2f} ms, p99 "
                  f"{figures['p99_ms']:.2f} ms; lock.apply mean {apply_us.mean():.0f} us, "
                  f"median {np.median(apply_us):.0f} us")


def _hot_path(impl, block, inbuf, frames, acc, weight_sum, outbuf, result, window, hop):
    """The kernel calls of one streaming process() call (see rtbwe.streaming)."""
    num_frames, _, _ = impl.ingest_and_frame(block, inbuf, window.shape[0] - hop, hop, frames)
    fill, _ = impl.accumulate_and_emit(frames, num_frames, window, hop, acc, weight_sum, 0,
                                       outbuf, window.shape[0])
    impl.pop_front(outbuf, fill, result)


def time_kernels(channels: int = 2, window_samples: int = 1024, hop_samples: int = 512,
                 num_frames: int = 1, repeats: int = 2000) -> dict[str, float]:
    """Median microseconds of the per-call kernel sequence, Numba vs NumPy reference."""
    kernels.warm_up()
    window = kernels.synthesis_window(window_samples, hop_samples)
    block_samples = num_frames * hop_samples
    rng = np.random.default_rng(0)
    block = rng.standard_normal((channels, block_samples)).astype(np.float32)
    result = {}
    for name, impl in (("numba", kernels), ("numpy", reference)):
        inbuf = np.zeros((channels, window_samples - hop_samples + block_samples), np.float32)
        frames = np.zeros((channels * num_frames, window_samples), np.float32)
        acc = np.zeros((channels, (num_frames - 1) * hop_samples + window_samples), np.float32)
        weight_sum = np.zeros(acc.shape[1], np.float32)
        outbuf = np.zeros((channels, window_samples + 3 * block_samples), np.float32)
        result_block = np.empty_like(block)
        args = (impl, block, inbuf, frames, acc, weight_sum, outbuf, result_block, window,
                hop_samples)
        for _ in range(20):
            _hot_path(*args)
        times = np.empty(repeats)
        for i in range(repeats):
            begun = time.perf_counter()
            _hot_path(*args)
            times[i] = time.perf_counter() - begun
        result[f"{name}_us"] = 1e6 * float(np.median(times))
    result["speedup"] = result["numpy_us"] / result["numba_us"]
    result.update(channels=channels, num_frames=num_frames, window_samples=window_samples)
    return result


def edge_error_db(model: torch.nn.Module, window_samples: int, hop_samples: int,
                  seconds: float = 2.0, sample_rate: int = 48000, seed: int = 0) -> float:
    """Error of windowed overlap-add vs whole-signal inference, in dB relative to the
    network's own contribution ``model(x) - x`` (lower is better; -inf = no edge effect).

    Uses a band-limited test signal (noise low-passed at 4 kHz) like the real input.
    """
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(int(seconds * sample_rate))
    low = sosfilt(butter(8, 4000, fs=sample_rate, output="sos"), noise)
    x = (0.3 * low / np.abs(low).max()).astype(np.float32)[None]
    with torch.inference_mode():
        full = model.eval()(torch.from_numpy(x)[None]).numpy()[0]
    window_ms = 1000 * window_samples / sample_rate
    hop_ms = 1000 * hop_samples / sample_rate
    bwe = BandwidthExtender(model, sample_rate=sample_rate, device="cpu", window_ms=window_ms,
                            hop_ms=hop_ms)
    windowed = bwe.process(x, sample_rate)
    contribution = full - x
    error = windowed - full
    margin = window_samples  # the signal's own start/end are edges for both
    power = float(np.var(contribution[:, margin:-margin]))  # its signal-dependent part
    err = float(np.mean(error[:, margin:-margin] ** 2))
    return 10 * np.log10(err / power) if err > 0 else float("-inf")


def window_quality(model: torch.nn.Module | str, window_samples: int, hop_samples: int,
                   reference_audio: np.ndarray, sample_rate: int = 48000, cutoff_hz: float = 6000.0,
                   phases: int = 3) -> dict[str, float]:
    """ΔSNR (dB) of windowed processing at one geometry, for the seen and unseen test filters.

    reference_audio: (samples,) full-band float32 music. The band-limited input goes through
    ``BandwidthExtender.process`` (offline, latency compensated); the result is averaged over
    ``phases`` hop-grid offsets (``k * hop / phases`` samples of leading silence), because a
    strided network's output depends on where the signal falls on the grid. Also returns the
    whole-signal ΔSNR (no windows) as ``{filter}_whole_dsnr``, the ceiling of any geometry.
    """
    from . import metrics

    bwe = BandwidthExtender(model, sample_rate=sample_rate, device="cpu",
                            window_ms=1000 * window_samples / sample_rate,
                            hop_ms=1000 * hop_samples / sample_rate)
    net = bwe.engine.model
    out: dict[str, float] = {}
    for name, spec in filters.TEST_FILTERS.items():
        lowpassed = filters.apply(reference_audio, sample_rate, cutoff_hz, spec).astype(np.float32)
        snr_in = metrics.snr_db(reference_audio, lowpassed)
        gains = []
        for k in range(phases):
            lead = k * hop_samples // phases
            padded = np.concatenate([np.zeros(lead, np.float32), lowpassed])
            estimate = bwe.process(padded, sample_rate)[lead:]
            gains.append(metrics.snr_db(reference_audio, estimate) - snr_in)
        out[f"{name}_dsnr"] = float(np.mean(gains))
        out[f"{name}_dsnr_spread"] = float(np.ptp(gains))
        with torch.inference_mode():
            whole = net(torch.from_numpy(lowpassed)[None, None])[0, 0].numpy()
        out[f"{name}_whole_dsnr"] = metrics.snr_db(reference_audio, whole) - snr_in
    return out


def streaming_table(timings: list[StreamTiming]) -> str:
    head = (f"{'model':14s} {'backend':11s} {'thr':>3s} {'ch':>2s} {'block':>6s} "
            f"{'budget ms':>9s} {'p50 ms':>7s} {'p99 ms':>7s} {'RT':>6s} {'latency ms':>10s}")
    rows = [head, "-" * len(head)]
    for t in timings:
        rows.append(f"{t.model:14s} {t.backend:11s} {t.num_threads:3d} {t.channels:2d} "
                    f"{t.block_samples:6d} {t.block_ms:9.2f} {t.p50_ms:7.2f} {t.p99_ms:7.2f} "
                    f"{t.rt_factor:6.3f} {t.latency_ms:10.2f}")
    return "\n".join(rows)


def describe_extender(model: str, bwe: BandwidthExtender) -> str:
    """One line: which weights ``model`` timed, and whether the long-term-spectrum tracker ran."""
    from .conditioning import condition_bands
    from .weights import SHIPPED

    bands = condition_bands(bwe.engine.model)
    weights = f"shipped weights {SHIPPED[model]}" if model in SHIPPED else "random weights"
    return (f"{model}: {weights}, " + (f"conditioned on the long-term spectrum ({bands} bands)"
                                       if bands else "no conditioning"))


def report(models: list[str], backends: list[str] | None, threads: list[int],
           block_samples: list[int], seconds: float = 5.0,
           window_ms: float = DEFAULT_WINDOW_MS, hop_ms: float = DEFAULT_HOP_MS,
           channels: int = 1, paced: bool = False) -> str:
    """The table ``rtbwe bench`` prints: streaming timings (``paced``: in real time, see
    :func:`time_streaming`), then kernel speed-ups. ``backends`` None: every CPU backend
    installed (:func:`cpu_backends`)."""
    timings, described = [], {}
    backends = backends or cpu_backends()
    for model in models:
        for backend in backends:
            for num_threads in threads:
                bwe = build_extender(model, backend, num_threads, window_ms, hop_ms)
                described.setdefault(model, describe_extender(model, bwe))
                for block in block_samples:
                    timings.append(time_streaming(bwe, block, seconds, channels, model,
                                                  paced=paced))
    lines = [*described.values(),
             f"streaming at {bwe.sample_rate} Hz, window {bwe.window_samples} / hop "
             f"{bwe.hop_samples} samples, algorithmic latency {bwe.latency_ms:.2f} ms, "
             f"{'paced in real time' if paced else 'flat out'} "
             f"({runtime_versions()}, {torch.get_num_threads()} torch threads now)",
             streaming_table(timings), "",
             "kernels per streaming call (2 ch): Numba vs NumPy reference"]
    for frames in (1, 17):
        k = time_kernels(num_frames=frames, window_samples=bwe.window_samples,
                         hop_samples=bwe.hop_samples, repeats=500)
        lines.append(f"  {frames:2d} window(s)/call: numba {k['numba_us']:8.1f} us   numpy "
                     f"{k['numpy_us']:8.1f} us   speed-up {k['speedup']:5.1f}x")
    return "\n".join(lines)


def as_dict(timing: StreamTiming) -> dict:
    return asdict(timing)
