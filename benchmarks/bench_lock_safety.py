"""What the lock's safety factors (gate and level cap) cost per streaming hop.

``python benchmarks/bench_lock_safety.py [--hops 2000]``: one mono window per hop (1024 / 512
samples at 48 kHz, noise low-passed at 6 kHz so the lock works on every window), the
tracker's update plus the lock, timed call by call with the two variants interleaved:

* ``gain only``: the tracker without the per-window contrast, the lock with its gain table
  only (the fifth session's path);
* ``gate + cap``: the tracker also computing each window's excess and octave-below power, the
  lock applying the gate and the cap (the shipped path).

Prints the median and 99th percentile per hop of each, and their ratio. The network is not
included: its cost is the same in both.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from rtbwe import filters
from rtbwe.conditioning import WIDE_BANDS
from rtbwe.tracker import SpectrumTracker
from rtbwe.passband import DEFAULT_MAX_ADDED_RATIO, DetectedBandLock

RATE, WINDOW, HOP = 48000, 1024, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noise = filters.lowpass((0.1 * rng.standard_normal((args.hops + 202) * HOP)).astype(
        np.float32), RATE, 6000, "butter", 8)
    frames = np.lib.stride_tricks.sliding_window_view(noise, WINDOW)[::HOP]
    gains = [[5000.0, 0.8], [9000.0, 0.6], [1e9, 0.0]]
    variants = {
        "gain only": (SpectrumTracker(1, RATE, WINDOW, HOP, WIDE_BANDS),
                      DetectedBandLock(RATE, WINDOW, gain=gains, gate=False), None),
        "gate + cap": (SpectrumTracker(1, RATE, WINDOW, HOP, WIDE_BANDS),
                       DetectedBandLock(RATE, WINDOW, gain=gains,
                                        max_added_ratio=DEFAULT_MAX_ADDED_RATIO),
                       (np.zeros(1), np.zeros(1))),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    conditions = np.zeros((1, WIDE_BANDS), np.float32)
    cutoffs = np.zeros(1)
    for k in range(args.hops + 200):
        window = np.ascontiguousarray(frames[k][None])
        fake_output = window * 1.1  # what the network returned (its cost is not timed)
        for name, (tracker, lock, contrast) in variants.items():
            out = fake_output.copy()
            start = time.perf_counter()
            tracker.update(window, 1, conditions, cutoffs, contrast)
            lock.apply(window, out, 1, cutoffs, contrast)
            if k >= 200:  # the first 200 hops: the detector's first estimate, warm caches
                times[name].append(time.perf_counter() - start)
    load = os.getloadavg()[0]
    print(f"{args.hops} hops, 1-minute load average {load:.2f}")
    for name, t in times.items():
        t = np.asarray(t) * 1e6
        print(f"{name:>10}: median {np.median(t):6.1f} us, p99 {np.percentile(t, 99):6.1f} us")
    ratio = np.median(times["gate + cap"]) / np.median(times["gain only"])
    print(f"gate + cap / gain only (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
