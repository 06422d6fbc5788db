"""What bandwidth detection and the detected-band lock cost per streaming call.

Input: noise low-passed at 6 kHz (Butterworth 8), so the detector finds a band limit and the
lock runs on every window (on full-band noise it would pass windows through). ``free``: the
same path without the lock; the tracker (and its detection) runs for every model.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from rtbwe import filters
from rtbwe.benchmarking import build_extender

RATE = 48000
SECONDS = 4.0


@pytest.mark.parametrize("passband", ["detected", "free"])
@pytest.mark.parametrize("model", ["default", "arunet-small"])
def test_detection_and_lock_cost(benchmark, record, model, passband):
    bwe = build_extender(model, "eager", 1)
    bwe.passband, bwe._band_lock = passband, passband == "detected"
    noise = 0.1 * np.random.default_rng(3).standard_normal(int(2 * SECONDS * RATE))
    signal = filters.lowpass(noise.astype(np.float32), RATE, 6000, "butter", 8)
    blocks = [np.ascontiguousarray(signal[None, i:i + 512]) for i in
              range(0, len(signal) - 512, 512)]
    bwe.process(np.concatenate(blocks[:200], axis=1), RATE, reset=False)  # 2 s: detected
    feed = itertools.cycle(blocks[200:])
    benchmark.pedantic(lambda: bwe.process(next(feed), RATE, reset=False),
                       rounds=int(SECONDS * RATE) // 512, iterations=1, warmup_rounds=20)
    times = np.asarray(benchmark.stats.stats.data)
    record(p50_ms=1e3 * float(np.percentile(times, 50)),
           p99_ms=1e3 * float(np.percentile(times, 99)),
           rt_factor=float(times.sum() / (len(times) * 512 / RATE)), latency_ms=bwe.latency_ms,
           detected_hz=bwe.input_bandwidth_hz)
