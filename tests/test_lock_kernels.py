"""The detected-band lock's Numba kernels (kernels/lock.py) against their NumPy twins, and the
lock built on them against the same lock running the twins."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rtbwe import kernels
from rtbwe.kernels import lock as lock_kernels
from rtbwe.kernels import reference
from rtbwe.passband import DetectedBandLock

SR, WINDOW = 48000, 1024


@pytest.fixture(scope="module", autouse=True)
def _warm():
    kernels.warm_up()


def _case(rows: int, seed: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    cutoff = rng.choice([3000.0, 4500.0, 5000.0, 8000.0, 12000.0, 23000.0], rows)
    # a view into a wider buffer, as the lock's irfft output is
    high = (rng.standard_normal((rows, WINDOW + 40)) * rng.uniform(0.0, 3.0, (rows, 1)))
    high = high.astype(dtype)[:, 20:20 + WINDOW]
    excess = rng.uniform(0.0, 30.0, rows)
    rolloff = rng.uniform(-12.0, -2.0, rows)
    below = rng.uniform(0.0, 2.0e3, rows) * rng.integers(0, 2, rows)  # some silent: cap = 0
    return cutoff, high, excess, rolloff, below


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factors", ["none", "gate", "rolloff", "cap", "all"])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_lock_gains_matches_reference(rows, factors, dtype):
    cutoff, high, excess, rolloff, below = _case(rows, rows * 7 + len(factors), dtype)
    unused = np.empty(0)
    pick = {"gate": excess, "rolloff": rolloff, "cap": below}
    args = (np.array([4500.0, 5500.0, 9000.0]), np.array([1.1, 0.5, 0.7, 0.2]),
            pick["gate"] if factors in ("gate", "all") else unused, 10.0, 20.0,
            pick["rolloff"] if factors in ("rolloff", "all") else unused, -5.0, -9.0,
            pick["cap"] if factors in ("cap", "all") else unused, 0.5,
            np.hanning(WINDOW + 2)[1:-1] ** 2 * (WINDOW / 2))
    fast, slow = np.full(rows + 2, -1.0), np.full(rows + 2, -1.0)
    lock_kernels.lock_gains(cutoff, high, *args, fast)
    reference.lock_gains(cutoff, high, *args, slow)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=0.0)
    assert (fast[:rows] >= 0.0).all() and (fast[rows:] == -1.0).all()
    if factors == "none":  # the table alone: the bucket edges are exclusive on the left
        expected = np.select([cutoff < 4500, cutoff < 5500, cutoff < 9000], [1.1, 0.5, 0.7], 0.2)
        np.testing.assert_array_equal(fast[:rows], expected)


@pytest.mark.parametrize("rows_index", [[0, 1, 2], [1, 3], [2]])
def test_add_gained_matches_reference_bit_for_bit(rows_index):
    rng = np.random.default_rng(len(rows_index))
    inputs = rng.standard_normal((4, WINDOW)).astype(np.float32)
    outputs = rng.standard_normal((4, WINDOW)).astype(np.float32)
    high = rng.standard_normal((len(rows_index), WINDOW + 8)).astype(np.float32)[:, 3:3 + WINDOW]
    gains = rng.uniform(0.0, 1.5, len(rows_index))
    index = np.array(rows_index, np.int64)
    fast, slow = outputs.copy(), outputs.copy()
    lock_kernels.add_gained(inputs, fast, high, gains, index)
    reference.add_gained(inputs, slow, high, gains, index)
    np.testing.assert_array_equal(fast, slow)
    untouched = np.setdiff1d(np.arange(4), index)
    np.testing.assert_array_equal(fast[untouched], outputs[untouched])


def test_lock_kernels_check_their_buffers():
    high = np.zeros((2, 8), np.float32)
    gains, unused = np.zeros(2), np.empty(0)
    with pytest.raises(ValueError, match="lock_gains"):  # hann_sq of the wrong length
        lock_kernels.lock_gains(np.zeros(2), high, np.zeros(1), np.ones(2), unused, 10.0, 20.0,
                                unused, -5.0, -9.0, unused, 1.0, np.ones(7), gains)
    with pytest.raises(ValueError, match="shorter than rows"):
        lock_kernels.lock_gains(np.zeros(2), high, np.zeros(1), np.ones(2), np.zeros(1), 10.0,
                                20.0, unused, -5.0, -9.0, unused, 1.0, np.ones(8), gains)
    with pytest.raises(ValueError, match="outside the buffers"):
        lock_kernels.add_gained(high, high.copy(), high, gains, np.array([0, 2]))


@pytest.mark.parametrize("rolloff_gate_db", [None, (-5.0, -9.0)])
def test_lock_apply_equals_the_numpy_lock(rolloff_gate_db):
    """The whole lock on a mixed batch (rows at Nyquist, rows gated, rows capped) with the
    kernels and with the NumPy twins swapped in."""
    rng = np.random.default_rng(5)
    rows = 6
    inputs = rng.standard_normal((rows + 1, WINDOW)).astype(np.float32)
    outputs = (inputs + rng.standard_normal((rows + 1, WINDOW))).astype(np.float32)
    cutoffs = np.array([4000.0, 24000.0, 7000.0, 12000.0, 24000.0, 16000.0, 5000.0])
    contrast = (np.array([0.0, 0.0, 15.0, 25.0, 0.0, 3.0, 0.0]),
                np.array([1e3, 0.0, 1e-3, 1e3, 0.0, 1e3, 1e3]),
                np.array([-3.0, 0.0, -6.0, -8.0, 0.0, -12.0, 0.0]))
    results = []
    for impl in (kernels, reference):
        lock = DetectedBandLock(SR, WINDOW, gain=[[6000.0, 0.8], [1e9, 0.5]],
                                max_added_ratio=0.5, rolloff_gate_db=rolloff_gate_db)
        lock.kernels = impl
        out = outputs.copy()
        lock.apply(inputs, out, rows, cutoffs, contrast[:3 if lock.needs_rolloff else 2])
        results.append(out)
    np.testing.assert_allclose(results[0], results[1], rtol=0.0, atol=1e-6)
    np.testing.assert_array_equal(results[0][[1, 4]], inputs[[1, 4]])  # full band: the input
    np.testing.assert_array_equal(results[0][rows], outputs[rows])  # past rows: untouched
    assert not np.array_equal(results[0][0], inputs[0])  # the 4 kHz row is extended


LOCK_PROBE = """
import numpy as np
from rtbwe import kernels
from rtbwe.kernels import lock
from rtbwe.passband import DetectedBandLock
kernels.warm_up()
before = [len(lock.lock_gains.signatures), len(lock.add_gained.signatures)]
band_lock = DetectedBandLock(48000, 1024, gain=[[6000.0, 0.8], [1e9, 0.5]], max_added_ratio=1.0)
rng = np.random.default_rng(0)
inputs = rng.standard_normal((2, 1024)).astype(np.float32)
for rows in (1, 2):
    band_lock.apply(inputs, inputs + 1.0, rows, np.array([5000.0, 9000.0]),
                    (np.zeros(2), np.ones(2)))
print(*before, len(lock.lock_gains.signatures), len(lock.add_gained.signatures))
"""


def test_streaming_lock_uses_the_warmed_up_signatures():
    """warm_up compiles the types a streaming lock passes (a one-row and a two-row view of the
    high band), so the first hop of a mono or stereo stream compiles nothing."""
    done = subprocess.run([sys.executable, "-c", LOCK_PROBE], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    before_gains, before_add, after_gains, after_add = map(int, done.stdout.split()[-4:])
    assert (after_gains, after_add) == (before_gains, before_add) == (2, 2)
