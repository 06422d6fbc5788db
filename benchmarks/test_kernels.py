"""Kernel throughput: the kernel calls of one streaming process() call, Numba vs NumPy
reference (goal >= 10x), and the offline framing + overlap-add of 10 s of stereo audio."""
from __future__ import annotations

import numpy as np
import pytest

from rtbwe import kernels
from rtbwe.benchmarking import time_kernels
from rtbwe.kernels import reference


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("num_frames", [1, 17])
def test_streaming_call_kernels(benchmark, record, channels, num_frames):
    result = time_kernels(channels=channels, num_frames=num_frames, window_samples=1024,
                          hop_samples=512, repeats=3000)
    benchmark.pedantic(lambda: None, rounds=1)  # figures come from time_kernels' own timer
    record(numba_us=result["numba_us"], numpy_us=result["numpy_us"],
           speedup=result["speedup"])


def _offline(impl, signal, frames, window, acc, weight_sum, out, hop, num_frames):
    impl.frame_signal(signal, 0, hop, num_frames, frames)
    acc.fill(0.0)
    weight_sum.fill(0.0)
    impl.overlap_add(frames, num_frames, window, hop, acc, weight_sum, 0)
    impl.normalise(acc, weight_sum, 0, out.shape[1], out, 0)


@pytest.mark.parametrize("impl", [kernels, reference], ids=["numba", "numpy"])
def test_offline_framing_and_overlap_add(benchmark, record, impl):
    kernels.warm_up()
    window_samples, hop = 1024, 512
    num_frames = 1000
    samples = (num_frames - 1) * hop + window_samples
    signal = np.random.default_rng(0).standard_normal((2, samples)).astype(np.float32)
    frames = np.zeros((2 * num_frames, window_samples), np.float32)
    acc = np.zeros_like(signal)
    weight_sum = np.zeros(samples, np.float32)
    out = np.zeros_like(signal)
    window = kernels.synthesis_window(window_samples, hop)
    benchmark.pedantic(_offline, args=(impl, signal, frames, window, acc, weight_sum, out, hop,
                                       num_frames), rounds=20, iterations=1, warmup_rounds=2)
    np.testing.assert_allclose(out, signal, atol=1e-5)
    record(median_ms=1e3 * benchmark.stats.stats.median, audio_s=samples / 48000)
