"""Numba kernels against their plain NumPy twins, and the overlap-add identities."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rtbwe import kernels
from rtbwe.kernels import framing, overlap, reference


@pytest.fixture(scope="module", autouse=True)
def _warm():
    kernels.warm_up()


geometry = st.tuples(st.integers(1, 3), st.integers(2, 64), st.integers(1, 64),
                     st.integers(1, 6), st.integers(0, 5), st.integers(0, 2**31 - 1))


def _case(channels, window, hop, num_frames, start, seed):
    hop = min(hop, window)
    rng = np.random.default_rng(seed)
    samples = start + (num_frames - 1) * hop + window
    signal = rng.standard_normal((channels, samples)).astype(np.float32)
    return rng, hop, signal


@settings(max_examples=60, deadline=None)
@given(geometry)
def test_frame_signal_matches_reference(case):
    channels, window, hop, num_frames, start, seed = case
    _, hop, signal = _case(*case)
    fast = np.full((channels * num_frames + 1, window), 7.0, np.float32)
    slow = fast.copy()
    framing.frame_signal(signal, start, hop, num_frames, fast)
    reference.frame_signal(signal, start, hop, num_frames, slow)
    np.testing.assert_array_equal(fast, slow)
    # row c * num_frames + f is channel c, frame f
    c, f = channels - 1, num_frames - 1
    np.testing.assert_array_equal(fast[c * num_frames + f],
                                  signal[c, start + f * hop:start + f * hop + window])


@settings(max_examples=60, deadline=None)
@given(geometry)
def test_overlap_add_and_normalise_match_reference(case):
    channels, window, hop, num_frames, start, seed = case
    rng, hop, _ = _case(*case)
    frames = rng.standard_normal((channels * num_frames, window)).astype(np.float32)
    win = kernels.synthesis_window(window, hop)
    capacity = start + (num_frames - 1) * hop + window + 3
    acc_fast = rng.standard_normal((channels, capacity)).astype(np.float32)
    ws_fast = rng.random(capacity).astype(np.float32) + 0.1
    acc_slow, ws_slow = acc_fast.copy(), ws_fast.copy()
    overlap.overlap_add(frames, num_frames, win, hop, acc_fast, ws_fast, start)
    reference.overlap_add(frames, num_frames, win, hop, acc_slow, ws_slow, start)
    np.testing.assert_allclose(acc_fast, acc_slow, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ws_fast, ws_slow, rtol=1e-6, atol=1e-6)
    out_fast = np.zeros((channels, capacity + 2), np.float32)
    out_slow = out_fast.copy()
    overlap.normalise(acc_fast, ws_fast, 1, capacity - 1, out_fast, 2)
    reference.normalise(acc_slow, ws_slow, 1, capacity - 1, out_slow, 2)
    np.testing.assert_allclose(out_fast, out_slow, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(geometry)
def test_frame_then_overlap_add_reconstructs_signal(case):
    """Weighted OLA of unmodified frames divided by summed weights is the identity."""
    channels, window, hop, num_frames, start, seed = case
    _, hop, signal = _case(*case)
    frames = np.zeros((channels * num_frames, window), np.float32)
    kernels.frame_signal(signal, start, hop, num_frames, frames)
    acc = np.zeros_like(signal)
    weight_sum = np.zeros(signal.shape[1], np.float32)
    kernels.overlap_add(frames, num_frames, kernels.synthesis_window(window, hop), hop, acc,
                        weight_sum, start)
    covered = (num_frames - 1) * hop + window
    out = np.zeros((channels, covered), np.float32)
    kernels.normalise(acc, weight_sum, start, covered, out, 0)
    np.testing.assert_allclose(out, signal[:, start:start + covered], rtol=1e-5, atol=1e-6)


def test_normalise_refuses_gaps_between_windows():
    """hop > window leaves samples no window covers: the kernel must say so, not divide by 0."""
    acc = np.ones((1, 10), np.float32)
    weight_sum = np.ones(10, np.float32)
    weight_sum[6] = 0.0
    out = np.zeros((1, 10), np.float32)
    for impl in (overlap, reference):
        with pytest.raises(ValueError, match="not > 0"):
            impl.normalise(acc, weight_sum, 0, 10, out, 0)
        impl.normalise(acc, weight_sum, 0, 6, out, 0)  # the covered part is fine


def test_synthesis_window_is_positive_and_sums_to_one_at_half_overlap():
    win = kernels.synthesis_window(960, 480)
    assert win.dtype == np.float32 and win.min() > 0
    np.testing.assert_allclose(win[:480] + win[480:], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="hop_samples <= window_samples"):
        kernels.synthesis_window(100, 200)


def test_bounds_are_checked():
    signal = np.zeros((1, 100), np.float32)
    frames = np.zeros((4, 50), np.float32)
    with pytest.raises(ValueError, match="past the signal"):
        framing.frame_signal(signal, 0, 30, 3, frames)  # last frame ends at 110
    with pytest.raises(ValueError, match="too few rows"):
        framing.frame_signal(np.zeros((2, 200), np.float32), 0, 30, 3, frames)
    with pytest.raises(ValueError, match="past the accumulator"):
        overlap.overlap_add(frames, 3, np.ones(50, np.float32), 30, signal,
                                np.zeros(100, np.float32), 0)


@pytest.mark.parametrize("impl", [framing, reference], ids=["numba", "numpy"])
def test_copy_sanitised_and_replace_nonfinite(impl):
    source = np.array([[1.0, np.nan, 3.0, np.inf], [-np.inf, 2.0, 0.5, -1.0]], np.float32)
    dest = np.full((2, 7), 9.0, np.float32)
    assert impl.copy_sanitised(source, dest, 2) == 3
    np.testing.assert_array_equal(dest, [[9, 9, 1, 0, 3, 0, 9], [9, 9, 0, 2, .5, -1, 9]])
    buffer = source.copy()
    assert impl.replace_nonfinite(buffer, 1) == 2  # only the first row
    assert np.isfinite(buffer[0]).all() and np.isinf(buffer[1, 0])


@pytest.mark.parametrize("impl", [framing, reference], ids=["numba", "numpy"])
def test_shift_left_moves_and_zeroes(impl):
    buffer = np.arange(20, dtype=np.float32).reshape(2, 10)
    impl.shift_left(buffer, 3, 5)
    np.testing.assert_array_equal(buffer[0], [3, 4, 5, 6, 7, 0, 0, 0, 8, 9])
    np.testing.assert_array_equal(buffer[1], [13, 14, 15, 16, 17, 0, 0, 0, 18, 19])


def test_shift_accumulator_matches_reference():
    rng = np.random.default_rng(1)
    acc = rng.standard_normal((2, 12)).astype(np.float32)
    ws = rng.random(12).astype(np.float32)
    acc2, ws2 = acc.copy(), ws.copy()
    overlap.shift_accumulator(acc, ws, 4, 5)
    reference.shift_accumulator(acc2, ws2, 4, 5)
    np.testing.assert_array_equal(acc, acc2)
    np.testing.assert_array_equal(ws, ws2)
    assert ws[5:9].sum() == 0 and ws[0] == ws2[0]


def test_kernels_compile_once_and_are_cached():
    """cache=True and lazily typed: after warm-up each kernel has exactly one specialisation
    for the processor's types, so audio blocks never trigger a compile."""
    for kernel in (framing.frame_signal, overlap.overlap_add, overlap.normalise):
        assert kernel._cache.__class__.__name__ != "NullCache"
        assert len(kernel.signatures) == 1, kernel.signatures
    for kernel in (kernels.ingest_and_frame, kernels.accumulate_and_emit, kernels.pop_front):
        assert len(kernel.signatures) == 1, kernel.signatures


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.sampled_from([(8, 4), (12, 4), (10, 3), (6, 6)]),
       st.lists(st.integers(1, 40), min_size=1, max_size=8), st.integers(0, 2**31 - 1))
def test_fused_streaming_kernels_match_reference(channels, geometry, blocks, seed):
    """ingest_and_frame / accumulate_and_emit / pop_front over a whole stream, Numba vs NumPy,
    with NaN/Inf sprinkled in the input."""
    window, hop = geometry
    rng = np.random.default_rng(seed)
    win = kernels.synthesis_window(window, hop)
    cap = max(blocks)
    frames_max = (cap - 1) // hop + 1
    states = []
    for _ in range(2):
        states.append(dict(inbuf=np.zeros((channels, window - 1 + cap), np.float32),
                           frames=np.zeros((channels * frames_max, window), np.float32),
                           acc=np.zeros((channels, (frames_max - 1) * hop + window), np.float32),
                           ws=np.zeros((frames_max - 1) * hop + window, np.float32),
                           out=np.zeros((channels, window + frames_max * hop + cap), np.float32),
                           in_fill=window - hop, out_fill=window - 1))
    for size in blocks:
        block = rng.standard_normal((channels, size)).astype(np.float32)
        block[rng.random(block.shape) < 0.05] = np.nan
        results = []
        for impl, s in zip((kernels, reference), states):
            num_frames, s["in_fill"], bad_in = impl.ingest_and_frame(
                block, s["inbuf"], s["in_fill"], hop, s["frames"])
            bad_out = 0
            if num_frames:
                s["frames"][0, 0] = np.inf  # a non-finite "network output"
                s["out_fill"], bad_out = impl.accumulate_and_emit(
                    s["frames"], num_frames, win, hop, s["acc"], s["ws"], 0, s["out"],
                    s["out_fill"])
            popped = np.empty((channels, size), np.float32)
            s["out_fill"] = impl.pop_front(s["out"], s["out_fill"], popped)
            results.append((num_frames, s["in_fill"], s["out_fill"], bad_in, bad_out, popped))
        fast, slow = results
        assert fast[:5] == slow[:5]
        assert np.isfinite(fast[5]).all()
        np.testing.assert_allclose(fast[5], slow[5], rtol=1e-5, atol=1e-6)


NRT_PROBE = """
import numpy as np
from numba.core.runtime import rtsys
from rtbwe import kernels
from rtbwe.benchmarking import _hot_path
W, H, C, F = 1024, 512, 2, 3
kernels.warm_up()
window = kernels.synthesis_window(W, H)
block = np.random.default_rng(0).standard_normal((C, F * H)).astype(np.float32)
inbuf = np.zeros((C, W - H + F * H), np.float32)
frames = np.zeros((C * F, W), np.float32)
acc = np.zeros((C, (F - 1) * H + W), np.float32)
weight_sum = np.zeros(acc.shape[1], np.float32)
outbuf = np.zeros((C, W + 3 * F * H), np.float32)
result = np.empty_like(block)
args = (kernels, block, inbuf, frames, acc, weight_sum, outbuf, result, window, H)
_hot_path(*args)
before = rtsys.get_allocation_stats().alloc
for _ in range(100):
    _hot_path(*args)
print(rtsys.get_allocation_stats().alloc - before)
"""


def test_streaming_kernels_allocate_nothing_inside():
    """Numba's runtime counts every allocation (NUMBA_NRT_STATS=1). Its dispatcher wraps each
    array argument in one record per call (10 array arguments in the three streaming calls);
    anything more would be an allocation inside a kernel (``np.empty``, ``.copy()``, a
    temporary from an overlapping slice assignment)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", NRT_PROBE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    array_arguments_per_call = 3 + 5 + 2  # ingest_and_frame, accumulate_and_emit, pop_front
    assert int(done.stdout.split()[-1]) == 100 * array_arguments_per_call


# ---- the spectrum tracker's kernels (kernels/spectrum.py) --------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.sampled_from([16, 64, 448, 1024]),
       st.integers(0, 2**31 - 1))
def test_spectrum_kernels_match_reference(channels, num_frames, window, seed):
    """window_for_fft -> rfft -> accumulate_power -> window_contrast / pooled_condition, Numba
    vs NumPy, with samples over the clip level and state carried over two calls."""
    rng = np.random.default_rng(seed)
    rows, bins = channels * num_frames, window // 2 + 1
    hann = np.hanning(window)
    state = [dict(sums=rng.random((channels, bins)), weights=rng.random(channels) * 3)
             for _ in range(2)]
    state[1] = {k: v.copy() for k, v in state[0].items()}
    band_of_bin = rng.integers(-1, 6, bins)
    band_of_bin[:6] = np.arange(6)  # every band has a bin
    reference_bands = np.array([False, True, True, False, True, False])
    for call in range(2):
        frames = (3.0 * rng.standard_normal((rows + 1, window))).astype(np.float32)
        frames[0, :3] = [9.0, -20.0, 8.0]  # clipped to +-8
        cutoff_hz = rng.uniform(0.0, 30000.0, rows + 1)
        cutoff_hz[0] = 24000.0  # Nyquist at 48 kHz: no contrast
        if rows > 1:
            cutoff_hz[1] = 46.875 * 100.5  # halfway between two bins: rounds to even (100)
        reference_db = rng.normal(0.0, 5.0, rows + 1)
        results = []
        for impl, s in zip((kernels, reference), state):
            windowed = np.full((rows + 1, window), 5.0)
            impl.window_for_fft(frames, rows, hann, 8.0, windowed)
            spectrum = np.fft.rfft(windowed[:rows], axis=-1)
            power, averaged = np.zeros((rows, bins)), np.zeros((rows, bins))
            impl.accumulate_power(spectrum, channels, num_frames, 0.9, s["sums"], s["weights"],
                                  power, averaged)
            excess, below = np.full(rows + 1, 7.0), np.full(rows + 1, 7.0)
            impl.window_contrast(power, rows, cutoff_hz, reference_db, 48000 / window,
                                 24000.0, 1.1, excess, below)
            condition = np.full((rows + 1, 7), 7.0, np.float32)
            impl.pooled_condition(averaged, rows, band_of_bin, reference_bands, cutoff_hz,
                                  24000.0, -90.0, 20.0, 30.0, np.zeros(6), condition)
            results.append((windowed, power, averaged, excess, below, condition))
        for fast, slow in zip(*results):
            np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-6)
        windowed, power, averaged, excess, below, condition = results[0]
        assert windowed[rows:].min() == 5.0 and excess[rows] == below[rows] == 7.0  # rows only
        assert windowed[0, 0] == 8.0 * hann[0] and windowed[0, 1] == -8.0 * hann[1]
        assert below[0] == 0.0 and excess[0] == -reference_db[0]
        np.testing.assert_array_equal(state[0]["sums"], state[1]["sums"])  # same state
        np.testing.assert_array_equal(state[0]["weights"], state[1]["weights"])
        assert np.all(condition[:rows, -1] == np.float32(cutoff_hz[:rows] / 24000.0))


def test_window_contrast_rounds_ties_to_even_like_numpy():
    """The cutoff's bin k is np.round(cutoff / bin_hz): 100.5 -> 100 and 102.5 -> 102 (ties
    to even; rounding half up would give 101 and 103 and take bin 100 / 102 into the octave
    below the cutoff, [k // 2, k))."""
    power = np.zeros((2, 513))
    power[:, 60] = 1.0  # below the cutoff either way
    power[0, 100] = power[1, 102] = 1.0  # inside [k // 2, k) only if k rounded up
    excess, below = np.zeros(2), np.zeros(2)
    cutoff = 46.875 * np.array([100.5, 102.5])
    for impl in (kernels, reference):
        impl.window_contrast(power, 2, cutoff, np.zeros(2), 46.875, 24000.0, 1.1, excess, below)
        np.testing.assert_array_equal(below, [1.0, 1.0])
        np.testing.assert_allclose(excess, [-300.0, -300.0])  # nothing above the cutoff


def test_spectrum_kernels_check_their_buffers():
    with pytest.raises(ValueError, match="window_for_fft"):
        kernels.window_for_fft(np.zeros((2, 8), np.float32), 3, np.ones(8), 8.0, np.zeros((3, 8)))
    with pytest.raises(ValueError, match="accumulate_power"):
        kernels.accumulate_power(np.zeros((2, 5), np.complex128), 1, 3, 0.5, np.zeros((1, 5)),
                                 np.zeros(1), np.zeros((3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="window_contrast"):
        kernels.window_contrast(np.zeros((3, 5)), 3, np.zeros(2), np.zeros(3), 1.0, 2.0, 1.1,
                                np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="pooled_condition"):
        kernels.pooled_condition(np.zeros((1, 5)), 1, np.zeros(4, np.int64),
                                 np.ones(2, bool), np.zeros(1), 2.0, -90.0, 20.0, 30.0,
                                 np.zeros(2), np.zeros((1, 3), np.float32))


TRACKER_PROBE = """
import numpy as np
from numba.core.runtime import rtsys
from rtbwe import kernels
from rtbwe.conditioning import WIDE_BANDS
from rtbwe.tracker import SpectrumTracker
from rtbwe.kernels import spectrum
kernels.warm_up()
tracker = SpectrumTracker(1, 48000, 1024, 768, WIDE_BANDS)
tracker.min_frames = 10**9  # no bandwidth detection (NumPy) in the counted calls
frames = np.random.default_rng(0).standard_normal((1, 1024)).astype(np.float32)
out, cutoffs = np.zeros((1, WIDE_BANDS), np.float32), np.zeros(1)
contrast = (np.zeros(1), np.zeros(1))
tracker.update(frames, 1, out, cutoffs, contrast)
before = rtsys.get_allocation_stats().alloc
for _ in range(100):
    tracker.update(frames, 1, out, cutoffs, contrast)
print(rtsys.get_allocation_stats().alloc - before)
print(max(len(getattr(spectrum, name).signatures) for name in
          ("window_for_fft", "accumulate_power", "window_contrast", "pooled_condition")))
"""


def test_tracker_kernels_allocate_nothing_and_compile_once():
    """A streaming tracker update: the kernels see the types warm_up compiled (one
    specialisation each), and allocate nothing beyond the dispatcher's record per array
    argument (3 + 5 + 5 + 6 in the four calls)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", TRACKER_PROBE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    allocations, signatures = (int(v) for v in done.stdout.split()[-2:])
    assert allocations == 100 * (3 + 5 + 5 + 6)
    assert signatures == 1
