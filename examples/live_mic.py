"""Microphone to speakers with bandwidth extension, from Python (``rtbwe live`` does the same).

    python examples/live_mic.py                       # default devices, shipped model
    python examples/live_mic.py --model identity      # check the audio path, no network
    python examples/live_mic.py --input 2 --output 3 --block-size 128

Ctrl-C stops. ``rtbwe devices`` lists the device indices and names.
"""
from __future__ import annotations

import argparse
import sys

import torch

import rtbwe
from rtbwe.live import LiveSession
from rtbwe.live_device import LiveAudioError, run_live


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=None)
    parser.add_argument("--output", default=None)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--model", default="default")
    args = parser.parse_args(argv)

    network = torch.nn.Identity() if args.model == "identity" else args.model
    bwe = rtbwe.BandwidthExtender(network, num_threads=1)  # leave a core to the audio thread
    session = LiveSession(bwe, bwe.sample_rate, args.block_size)  # queue: one model hop
    print(f"latency {session.latency_ms:.1f} ms + the device's own", file=sys.stderr)
    try:
        summary = run_live(session, args.input, args.output)  # until Ctrl-C
    except LiveAudioError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"xruns {summary['xruns']}, late blocks {summary['late_blocks']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
