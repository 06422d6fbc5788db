"""What a hop costs when the network is skipped on full-band input (eighth session).

    pytest benchmarks/test_full_band_skip.py

With the detected-band lock, a window whose detected bandwidth is at Nyquist (full band, or
not yet known) comes out as it went in, whatever the network made of it; so the library
skips the network for a hop whose windows are all like that (``skip_full_band=True``, the
default). The other benchmarks time the network on every window (``build_extender``'s
``skip_full_band=False``): that is the cost of band-limited input, the worst case.

Contenders: the shipped default (ONNX Runtime, 1 thread, 1024 / 768, mono, host block = hop)
with the skip on and off, interleaved block by block (:class:`rtbwe.benchmarking.InterleavedStreams`),
fed noise at -20 dBFS, once full band and once low-passed at 6 kHz (where the network runs
either way once the bandwidth is known, after 0.5 s: the skip's own cost). ``WARMUP_ROUNDS``
covers the first detection.
"""
from __future__ import annotations

import os

import pytest

from rtbwe.benchmarking import InterleavedStreams, build_extender

RATE = 48000
ROUNDS = 1000           # 16 s of audio per contender at hop 768
WARMUP_ROUNDS = 60      # 0.96 s: past the first bandwidth detection (0.5 s)


@pytest.mark.parametrize("signal", ["full band", "lowpass 6 kHz"])
def test_full_band_skip(benchmark, record, signal):
    pytest.importorskip("onnxruntime")
    extenders = {f"skip-{'on' if skip else 'off'}": build_extender("default", "onnx", 1,
                                                                   skip_full_band=skip)
                 for skip in (False, True)}
    streams = InterleavedStreams(extenders, 1, RATE, seed=0,
                                 lowpass_hz=None if signal == "full band" else 6000.0)
    load_before = os.getloadavg()[0]
    benchmark.pedantic(streams.one_round, rounds=ROUNDS, iterations=1,
                       warmup_rounds=WARMUP_ROUNDS)
    figures = {"load_1min": f"{load_before:.2f}->{os.getloadavg()[0]:.2f}", "signal": signal,
               "backend": "onnx", "threads": 1}
    for name, bwe in extenders.items():
        assert bwe.backend == "onnx", bwe.engine.fallback_reason
        measured = streams.figures(name, WARMUP_ROUNDS)
        for key in ("rt", "p50_ms", "p99_ms"):
            figures[f"{name}_{key}"] = measured[key]
        figures[f"{name}_passed_windows"] = bwe.stats.passed_windows
    record(**figures)
