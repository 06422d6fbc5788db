"""What the skirt boost (rtbwe/skirt.py) costs per hop: the default with it on and off.

    python benchmarks/bench_skirt.py [--rounds 2000] [--window 1024 --hop 768]

Tenth session; the learned estimate (rtbwe/skirt_model.py) since the twelfth. Three default
extenders (ONNX Runtime, 1 thread): the boost by the learned estimate, by the trend rule, and
off, stream side by side (:class:`rtbwe.benchmarking.InterleavedStreams`:
noise low-passed at 6 kHz by a zero-phase Butterworth 6's response, so the lock extends and
the boost works on every window), one hop per round each, with each lock's ``apply`` timed.
The boost's other cost, the skirt gain per detection (every 8th hop), is in the hop times.
"""
from __future__ import annotations

import argparse

from rtbwe.benchmarking import InterleavedStreams, build_extender

RATE = 48000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--hop", type=int, default=768)
    args = parser.parse_args()
    extenders = {}
    for name, on, model in (("learned boost", True, "skirt-mlp"), ("trend boost", True, None),
                            ("boost off", False, None)):
        bwe = build_extender("default", "onnx", 1, window_ms=1000 * args.window / RATE,
                             hop_ms=1000 * args.hop / RATE)
        bwe._band_lock = {**bwe._band_lock, "skirt_eq": on, "skirt_model": model}
        extenders[name] = bwe
    streams = InterleavedStreams(extenders, 1, RATE, seed=0, lowpass_hz=6000.0)
    print(f"window / hop {args.window} / {args.hop}")
    streams.report(args.rounds, streams.time_lock_applies())
    for name in ("learned boost", "trend boost"):
        boosted_hz = extenders[name].stats.skirt_boost_hz
        print(f"the {name} reached {boosted_hz and boosted_hz / 1000:.1f} kHz")


if __name__ == "__main__":
    main()
