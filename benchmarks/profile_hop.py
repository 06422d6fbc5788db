"""Where one streaming hop's time goes outside the network (issue 14).

    python benchmarks/profile_hop.py                          # default model, 1500 hops
    python benchmarks/profile_hop.py --model arunet-small-half-wide --signal noise
    python benchmarks/profile_hop.py --before 933c42f     # that commit's path too, interleaved

``BandwidthExtender(model, backend="onnx", num_threads=1)`` at its default geometry (1024 /
768), mono, host block = the hop, fed ``--signal``: ``lowpass`` (noise at -20 dBFS low-passed
at 6 kHz, Butterworth 8: the detector finds a band limit and the lock works on every window)
or ``noise`` (full band: the lock passes windows through). After ``--warmup`` hops (the first
detection comes after 0.5 s), each of the path's steps is wrapped by a ``perf_counter``
timer for ``--hops`` hops:

* ``ingest``: ``kernels.ingest_and_frame`` (input ring -> window);
* ``tracker``: ``SpectrumTracker.update`` (FFT, long-term average, condition, contrast), split
  into hops with a bandwidth detection (every DETECT_EVERY_FRAMES-th) and hops without;
* ``engine``: ``InferenceEngine.run`` (the network, ONNX Runtime);
* ``lock``: ``DetectedBandLock.apply``;
* ``emit``: ``kernels.accumulate_and_emit`` + ``kernels.pop_front`` (overlap-add, output);
* ``glue``: the rest of ``process()`` (argument checks, the thread lock, stats, Python).

Prints mean and median microseconds per hop for each step and the 1-minute load average.
The timers add about 1 us per wrapped call. ``--before COMMIT``: the same for the package as
of that commit (:mod:`before`), its hops alternating with the working tree's in one process.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np

from rtbwe import filters, kernels
from rtbwe.benchmarking import build_extender

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # before.py, its neighbour

RATE = 48000


def _timed(times: dict[str, list[float]], name: str, function):
    def wrapper(*args, **kwargs):
        begun = time.perf_counter()
        result = function(*args, **kwargs)
        times[name].append(time.perf_counter() - begun)
        return result
    return wrapper


class _Profiled:
    """One extender whose path steps are wrapped by timers (``kernels``: its package's)."""

    def __init__(self, bwe, kernels):
        self.bwe, self.kernels = bwe, kernels
        self.times: dict[str, list[float]] = defaultdict(list)
        self.originals = {name: getattr(kernels, name) for name in
                          ("ingest_and_frame", "accumulate_and_emit", "pop_front")}
        path = bwe._stream.path
        self.tracker = path.tracker
        self.tracker.update = _timed(self.times, "tracker", self.tracker.update)
        bwe.engine.run = _timed(self.times, "engine", bwe.engine.run)
        if path.lock is not None:
            path.lock.apply = _timed(self.times, "lock", path.lock.apply)
        self.due: list[bool] = []

    def process(self, block: np.ndarray) -> None:
        """One block, the kernels timed only meanwhile (two packages may share a module)."""
        for name, step in (("ingest_and_frame", "ingest"), ("accumulate_and_emit", "emit"),
                           ("pop_front", "pop")):
            setattr(self.kernels, name, _timed(self.times, step, self.originals[name]))
        seen = self.tracker.frames_seen
        try:
            begun = time.perf_counter()
            self.bwe.process(block, RATE, reset=False)
            self.times["total"].append(time.perf_counter() - begun)
        finally:
            for name, function in self.originals.items():
                setattr(self.kernels, name, function)
        self.due.append(self.tracker.frames_seen != seen and
                        _detects_at(self.tracker, self.tracker.frames_seen))

    def summary(self, hops: int) -> dict[str, dict[str, float]]:
        steps = {name: np.asarray(values) for name, values in self.times.items()}
        steps["emit"] = steps["emit"] + steps.pop("pop")
        if "lock" not in steps:
            steps["lock"] = np.zeros(hops)
        steps["glue"] = steps["total"] - sum(steps[name] for name in
                                              ("ingest", "tracker", "engine", "lock", "emit"))
        due = np.asarray(self.due)
        steps["tracker, detection hops"] = steps["tracker"][due]
        steps["tracker, other hops"] = steps["tracker"][~due]
        out = {}
        for name, values in steps.items():
            values = 1e6 * values
            out[name] = {"mean_us": float(values.mean()), "median_us": float(np.median(values)),
                         "p99_us": float(np.percentile(values, 99)), "count": int(values.size)}
        return out


def profile(model: str, hops: int, warmup: int, signal: str, before: str | None = None
            ) -> dict[str, dict[str, dict[str, float]]]:
    """Per-step mean / median / p99 microseconds per hop (see the module docstring), for
    ``"after"`` (the working tree) and, with ``before``, ``"before"`` (that commit)."""
    extenders = {"after": (build_extender(model, "onnx", 1), kernels)}
    if before is not None:
        from bench_hop_before_after import old_extender
        from before import load_package, submodule

        package = load_package(before)
        extenders["before"] = (old_extender(package, model), submodule(package, "kernels"))
    hop = extenders["after"][0].hop_samples
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((warmup + hops) * hop)).astype(np.float32)
    if signal == "lowpass":
        audio = filters.lowpass(audio, RATE, 6000, "butter", 8).astype(np.float32)
    blocks = [np.ascontiguousarray(audio[None, i * hop:(i + 1) * hop])
              for i in range(warmup + hops)]
    profiled = {}
    for name, (bwe, package_kernels) in extenders.items():
        bwe.prepare(1, hop)
        for block in blocks[:warmup]:
            bwe.process(block, RATE, reset=False)
        profiled[name] = _Profiled(bwe, package_kernels)
    for block in blocks[warmup:]:
        for one in profiled.values():
            one.process(block)
    return {name: one.summary(hops) for name, one in profiled.items()}


def _detects_at(tracker, frames_seen: int) -> bool:
    from rtbwe.tracker import DETECT_EVERY_FRAMES

    return (frames_seen >= tracker.min_frames and
            (frames_seen - tracker.min_frames) % DETECT_EVERY_FRAMES == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--hops", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--signal", choices=("lowpass", "noise"), default="lowpass")
    parser.add_argument("--before", help="also profile the package as of this commit")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = profile(args.model, args.hops, args.warmup, args.signal, args.before)
    print(f"{args.model}, {args.signal}, {args.hops} hops, 1-minute load "
          f"{load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    for package, steps in result.items():
        print(f"{package}:\n{'step':>24s} {'mean us':>9s} {'median us':>9s} {'p99 us':>9s} "
              f"{'hops':>5s}")
        for name, row in steps.items():
            print(f"{name:>24s} {row['mean_us']:9.1f} {row['median_us']:9.1f} "
                  f"{row['p99_us']:9.1f} {row['count']:5d}")


if __name__ == "__main__":
    main()
