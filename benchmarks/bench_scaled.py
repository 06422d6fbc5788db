"""What cutoff scaling (rtbwe/rescale.py) costs per hop: the default against
``default-scaled-6k`` and ``default-scaled-half-6k`` on inputs low-passed at 4, 6 and 8 kHz.

    python benchmarks/bench_scaled.py [--rounds 1000] [--cutoffs 4000 6000 8000]
                                      [--cards default default-scaled-6k ...] [--backend onnx]

Thirteenth session. Extenders (eager torch, 1 thread, 1024 / 768) stream side by side
(:class:`rtbwe.benchmarking.InterleavedStreams`: noise with a Butterworth 6 skirt at each
cutoff, so every window after the first detection goes to the scaled 6 kHz network), one hop
per round each. The scaled network runs on ``1024 x cutoff / 6000`` samples (688 / 1024 /
1360 here), so its cost follows the cutoff; its resampling runs in SciPy sparse products.
Fourteenth session: ``default-scaled-half-6k`` runs the 6 kHz network's half-width student.
Eighteenth session: with ``--backend onnx`` the scaled network runs in ONNX Runtime too.
"""
from __future__ import annotations

import argparse

from rtbwe.benchmarking import InterleavedStreams, build_extender

RATE = 48000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[4000.0, 6000.0, 8000.0])
    parser.add_argument("--cards", nargs="+",
                        default=["default", "default-scaled-6k", "default-scaled-half-6k"],
                        help="shipped names or card paths; the first is the reference")
    parser.add_argument("--backend", default="eager",
                        help="the engine's backend (eager, or onnx as rtbwe process and live "
                        "pick on CPU); the scaled network runs in the same (eager or onnx)")
    args = parser.parse_args()
    for cutoff_hz in args.cutoffs:
        extenders = {name: build_extender(name, args.backend, 1)
                     for name in args.cards}
        streams = InterleavedStreams(extenders, 1, RATE, seed=0, lowpass_hz=cutoff_hz)
        print(f"noise low-passed at {cutoff_hz / 1000:g} kHz (Butterworth 6)")
        streams.report(args.rounds, streams.time_lock_applies())


if __name__ == "__main__":
    main()
