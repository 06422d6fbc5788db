"""Per-hop latency (p50/p99) and streaming RT factor per model, backend, threads, block size.

Budget per call = the block's audio duration; RT factor = compute time / audio time.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from rtbwe.benchmarking import build_extender

RATE = 48000
SECONDS = 4.0

# (model, backend, threads, block samples, window samples, hop samples)
GRID = [
    *[("arunet-small", backend, threads, block, 1024, 512)
      for backend in ("eager", "torchscript") for threads in (1, 2) for block in (512, 128, 2048)],
    # the paper's geometry, 960/480 (20 ms latency), for comparison with the default
    *[("arunet-small", backend, threads, 480, 960, 480) for backend in ("eager", "torchscript")
      for threads in (1, 2)],
    *[("tiny", backend, 1, 512, 1024, 512) for backend in ("eager", "torchscript")],
    ("arunet", "eager", 2, 512, 1024, 512),  # the paper-size network, once
    # the shipped default (conditioned, tracker and band lock included) on every CPU backend
    *[("default", backend, 1, 512, 1024, 512) for backend in ("eager", "torchscript", "onnx")],
]


def _id(case):
    return "-".join(map(str, case))


@pytest.mark.parametrize("model, backend, threads, block, window, hop", GRID,
                         ids=map(_id, GRID))
@pytest.mark.parametrize("channels", [1])
def test_streaming(benchmark, record, model, backend, threads, block, window, hop, channels):
    bwe = build_extender(model, backend, threads, 1000 * window / RATE, 1000 * hop / RATE)
    calls = int(SECONDS * RATE) // block if model != "arunet" else 50
    rng = np.random.default_rng(0)
    blocks = [np.ascontiguousarray(0.1 * rng.standard_normal((channels, block)),
                                   dtype=np.float32) for _ in range(64)]
    bwe.prepare(channels, block)
    feed = itertools.cycle(blocks)

    def one_call():
        bwe.process(next(feed), RATE, reset=False)

    benchmark.pedantic(one_call, rounds=calls, iterations=1, warmup_rounds=20)
    times = np.asarray(benchmark.stats.stats.data)
    record(p50_ms=1e3 * float(np.percentile(times, 50)),
           p99_ms=1e3 * float(np.percentile(times, 99)),
           budget_ms=1e3 * block / RATE,
           rt_factor=float(times.sum() / (len(times) * block / RATE)),
           latency_ms=bwe.latency_ms, window_samples=bwe.window_samples,
           hop_samples=bwe.hop_samples)


def _time_mono_hops(benchmark, record, bwe):
    """Time ``bwe`` on mono 512-sample streaming blocks of noise for ``SECONDS``."""
    rng = np.random.default_rng(2)
    blocks = itertools.cycle([np.ascontiguousarray(0.1 * rng.standard_normal((1, 512)),
                                                   dtype=np.float32) for _ in range(16)])
    bwe.prepare(1, 512)
    benchmark.pedantic(lambda: bwe.process(next(blocks), RATE, reset=False),
                       rounds=int(SECONDS * RATE) // 512, iterations=1, warmup_rounds=20)
    times = np.asarray(benchmark.stats.stats.data)
    record(p50_ms=1e3 * float(np.percentile(times, 50)),
           p99_ms=1e3 * float(np.percentile(times, 99)),
           rt_factor=float(times.sum() / (len(times) * 512 / RATE)), latency_ms=bwe.latency_ms)


@pytest.mark.parametrize("backend", ["eager", "torchscript"])
@pytest.mark.parametrize("keep_below_hz", [None, 4500.0], ids=["plain", "keep4500"])
def test_passband_lock_cost(benchmark, record, backend, keep_below_hz):
    """What keep_below_hz (a 255-tap FIR on each window's residual) costs per call."""
    bwe = build_extender("arunet-small", backend, 1, keep_below_hz=keep_below_hz)
    _time_mono_hops(benchmark, record, bwe)


@pytest.mark.parametrize("backend", ["eager", "torchscript"])
@pytest.mark.parametrize("model", ["arunet-small", "arunet-small-cond"])
def test_conditioning_cost(benchmark, record, backend, model):
    """What the long-term-spectrum condition costs per call: the tracker's FFT of each
    window plus the FiLM MLP (arunet-small-cond) against the plain network."""
    bwe = build_extender(model, backend, 1)
    _time_mono_hops(benchmark, record, bwe)


def test_stereo_arunet_small(benchmark, record):
    """Stereo runs both channels as one batch per hop."""
    bwe = build_extender("arunet-small", "eager", 1)
    block = np.ascontiguousarray(0.1 * np.random.default_rng(1).standard_normal((2, 512)),
                                 dtype=np.float32)
    bwe.prepare(2, 512)
    benchmark.pedantic(bwe.process, args=(block, RATE), kwargs={"reset": False},
                       rounds=200, iterations=1, warmup_rounds=20)
    times = np.asarray(benchmark.stats.stats.data)
    record(p50_ms=1e3 * float(np.percentile(times, 50)),
           p99_ms=1e3 * float(np.percentile(times, 99)),
           rt_factor=float(times.sum() / (len(times) * 512 / RATE)), latency_ms=bwe.latency_ms)
