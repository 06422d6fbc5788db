"""Streaming RT and p99 per hop, an earlier commit against the working tree, interleaved block
by block in one process (issue 14: the work outside the network).

    python benchmarks/bench_hop_before_after.py --before 933c42f
    python benchmarks/bench_hop_before_after.py --before 933c42f --rounds 3000 --json out.json
    python benchmarks/bench_hop_before_after.py --before 933c42f --busy 2   # + 2 busy loops

For each model (``--models``; default: the shipped default and ``arunet-small-half-wide``),
two extenders at the default geometry (1024 / 768), backend ``onnx``, 1 thread, mono, host
block = the hop: one from the package as of ``--before`` (:mod:`before`, same weights), one
from the working tree. All of them stream side by side (:class:`rtbwe.benchmarking.
InterleavedStreams`: one block each per round), so a change of machine load moves every row
alike; the ratio after / before is the figure to read. Two signals, one after the other:

* ``noise``: full-band noise at -20 dBFS, as ``test_modes_load.py`` (the detector finds full
  band and the lock passes windows through);
* ``lowpass``: the same noise with nothing above 6 kHz, so the lock works on every window.

``--warmup`` rounds first (the first bandwidth detection comes after 0.5 s, 32 hops), then
``--rounds`` timed. Per extender: RT (sum of call times / audio time), p50 / p99 / max ms per
call; the 1-minute load average before and after each signal. ``--busy N``: N
``python -c 'while 1: pass'`` processes run from 15 s before the first signal to the end (as
``test_modes_load.py``'s ``busy2``).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before import load_package, submodule  # noqa: E402

from rtbwe.benchmarking import InterleavedStreams, build_extender  # noqa: E402

RATE = 48000
WINDOW_MS, HOP_MS = 1000 * 1024 / RATE, 1000 * 768 / RATE
SIGNALS = {"noise": None, "lowpass": 6000.0}


def old_extender(package, model: str):
    """``build_extender`` of the earlier package (onnx, 1 thread, 1024 / 768)."""
    processor = submodule(package, "processor")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # as build_extender: the network on every window, full-band noise included (an
        # earlier package without the option always ran it)
        skip = ({"skip_full_band": False} if "skip_full_band" in inspect.signature(
            processor.BandwidthExtender).parameters else {})
        bwe = processor.BandwidthExtender(model, device="cpu", backend="onnx", num_threads=1,
                                          window_ms=WINDOW_MS, hop_ms=HOP_MS, **skip)
    for part in (bwe, bwe.engine):  # the old package's code, not the working tree's
        assert type(part).__module__.startswith(package.__name__ + "."), type(part)
    return bwe


def run(before: str, models: list[str], rounds: int, warmup: int) -> dict:
    package = load_package(before)
    extenders = {}
    for model in models:
        extenders[f"{model} before"] = old_extender(package, model)
        extenders[f"{model} after"] = build_extender(model, "onnx", 1, WINDOW_MS, HOP_MS)
    for name, bwe in extenders.items():
        assert bwe.backend == "onnx", (name, bwe.engine.fallback_reason)
    result = {"before": before, "rounds": rounds, "signals": {}}
    for signal, lowpass_hz in SIGNALS.items():
        for bwe in extenders.values():
            bwe.reset()
        streams = InterleavedStreams(extenders, 1, RATE, seed=0, lowpass_hz=lowpass_hz)
        load_before = os.getloadavg()[0]
        for _ in range(warmup + rounds):
            streams.one_round()
        figures = {name: streams.figures(name, warmup) for name in extenders}
        for name, bwe in extenders.items():
            figures[name]["detected_hz"] = bwe.input_bandwidth_hz
        result["signals"][signal] = {"load_1min": [load_before, os.getloadavg()[0]],
                                     "figures": figures}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="commit to compare against")
    parser.add_argument("--models", nargs="+", default=["default", "arunet-small-half-wide"])
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes meanwhile")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.busy)]
    try:
        if busy:
            time.sleep(15.0)  # let the load average rise
        result = run(args.before, args.models, args.rounds, args.warmup)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    result["busy_loops"] = args.busy
    for signal, block in result["signals"].items():
        low, high = block["load_1min"]
        print(f"\n{signal}: {args.rounds} rounds, {args.busy} busy loops, 1-minute load "
              f"{low:.2f} -> {high:.2f}")
        print(f"{'extender':>36s} {'RT':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} "
              f"{'detected Hz':>11s}")
        for name, f in block["figures"].items():
            hz = "unknown" if f["detected_hz"] is None else f"{f['detected_hz']:.0f}"
            print(f"{name:>36s} {f['rt']:6.3f} {f['p50_ms']:7.2f} {f['p99_ms']:7.2f} "
                  f"{f['max_ms']:7.2f} {hz:>11s}")
        for model in args.models:
            old, new = block["figures"][f"{model} before"], block["figures"][f"{model} after"]
            print(f"{model}: after / before RT {new['rt'] / old['rt']:.3f}, p50 "
                  f"{new['p50_ms'] / old['p50_ms']:.3f}, p99 {new['p99_ms'] / old['p99_ms']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
