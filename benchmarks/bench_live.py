"""End-to-end latency of ``rtbwe live`` through a real JACK server, per block size.

For each block size (64, 128, 256, 512 frames) this starts ``jackd -S --no-realtime -d dummy
-r 48000 -p BLOCK``, runs a :class:`rtbwe.live.LiveSession` on PortAudio's JACK host with the
same block size, plays noise into its input port from a JACK client and records its output
port from another (``tests/jack_fixtures.py``), and reports:

* measured port-to-port delay (cross-correlation; must equal the reported latency),
* reported latency = model (W - 1) + buffer_blocks x block + PortAudio's one block,
* JACK xruns while recording, PortAudio CallbackFlags xruns, late (fallback) frames,
* worker load (time in ``processor.process`` / wall time).

A sound card adds JACK's own capture + playback latency (``-n 2``: about 3 periods).

Run:  python benchmarks/bench_live.py [--seconds 4] [--models identity arunet-small]
A running training job (PID in runs/TRAINING_PID) is paused with SIGSTOP for the run and
resumed with SIGCONT on exit, Ctrl-C included. Results: benchmarks/live_results.json; the
table is copied by hand into benchmarks/README_live.md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from jack_fixtures import (JackLoop, jack_missing_reason, measured_delay,  # noqa: E402
                           portaudio_ports, start_jack, stop_jack)

SR = 48000
BLOCKS = (64, 128, 256, 512)


class PausedTraining:
    """SIGSTOP the training job named in runs/TRAINING_PID; SIGCONT it on exit, always."""

    def __init__(self, pid_file: Path = ROOT / "runs" / "TRAINING_PID") -> None:
        self.pid: int | None = None
        if pid_file.exists():
            try:
                self.pid = int(pid_file.read_text().split()[0])
                os.kill(self.pid, 0)
            except (ValueError, IndexError, ProcessLookupError, PermissionError):
                self.pid = None

    def __enter__(self) -> "PausedTraining":
        if self.pid is not None:
            self._old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
            for s in self._old:  # a kill of this script still resumes training
                signal.signal(s, lambda *_: sys.exit(1))
            os.kill(self.pid, signal.SIGSTOP)
            print(f"paused training job {self.pid}", file=sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGCONT)
                print(f"resumed training job {self.pid}", file=sys.stderr)
            except ProcessLookupError:
                pass
            for s, handler in self._old.items():
                signal.signal(s, handler)


def make_processor(model: str, threads: int | None = None):
    import torch

    from rtbwe.processor import BandwidthExtender

    if model == "identity":
        return BandwidthExtender(torch.nn.Identity(), sample_rate=SR, device="cpu")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random weights": fine for timing
        return BandwidthExtender(model, sample_rate=SR, device="cpu", num_threads=threads)


def measure(block: int, model: str, seconds: float, buffer_blocks: int,
            threads: int | None = None, callback: str = "python") -> dict:
    from rtbwe.live import LiveSession
    from rtbwe.live_device import run_live

    server = start_jack(block)
    try:
        session = LiveSession(make_processor(model, threads), SR, block, buffer_blocks=buffer_blocks or None)
        x = (0.3 * np.random.default_rng(block).standard_normal(int(seconds * SR))
             ).astype(np.float32)
        extra = session.latency_frames + 4 * block
        loop = JackLoop(x, extra, server.name)
        try:
            summary = run_live(session, "system", "system", duration_s=(x.size + extra) / SR + 0.5,
                               on_started=lambda _: loop.connect(*portaudio_ports(server.name)),
                               out=io.StringIO(), callback=callback)
            loop.wait_done(5.0)
        finally:
            loop.close()
        total = summary["total_latency_frames"]
        delay = measured_delay(loop.recorded, x, 2 * total + 4 * block)
        return {"block": block, "model": model, "threads": threads, "callback": callback, "buffer_blocks": session.buffer_blocks,
                "measured_frames": delay, "reported_frames": total,
                "measured_ms": 1000.0 * delay / SR,
                "model_ms": session.algorithmic_ms, "buffer_ms": session.buffer_ms,
                "device_ms": summary["device_latency_ms"],
                "jack_xruns": loop.xruns_while_recording(), "callback_xruns": summary["xruns"],
                "late_frames": summary["late_frames"], "worker_load": summary["worker_load"],
                "seconds": seconds}
    finally:
        stop_jack(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=list(BLOCKS))
    parser.add_argument("--models", nargs="+", default=["identity", "arunet-small"])
    parser.add_argument("--buffer-blocks", type=int, nargs="+", default=[0],
                        help="0: the default (one model hop, at least 2 blocks)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--callbacks", nargs="+", default=["python"], choices=("python", "c"),
                        help="audio callback: Python (LiveSession.callback) or C (cffi)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: "
                        "torch's own choice)")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("live_results.json"))
    args = parser.parse_args(argv)
    reason = jack_missing_reason()
    if reason:
        print(f"bench_live: {reason}", file=sys.stderr)
        return 2
    rows = []
    with PausedTraining():
        for model in args.models:
            for buffer_blocks in args.buffer_blocks:
                for block in args.blocks:
                    for callback in args.callbacks:
                        row = measure(block, model, args.seconds, buffer_blocks, args.threads,
                                      callback)
                        rows.append(row)
                        print(f"{model:13s} {callback:6s} block {block:4d} buf "
                              f"{row['buffer_blocks']}: measured "
                              f"{row['measured_frames']:5d} fr = {row['measured_ms']:6.2f} ms "
                              f"(reported {row['reported_frames']}: model {row['model_ms']:.1f} + "
                              f"buffer {row['buffer_ms']:.2f} + PortAudio {row['device_ms']:.2f} ms)"
                              f" | xruns jack {row['jack_xruns']} cb {row['callback_xruns']} | "
                              f"late {row['late_frames']} | load {row['worker_load']:.0%}",
                              flush=True)
    args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"),
                                     "load_average": os.getloadavg(), "rows": rows},
                                    indent=1) + "\n")
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
