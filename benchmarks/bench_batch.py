"""Files per minute: ``rtbwe process FOLDER OUT`` (one process) against ``--ray local`` (a Ray
instance on this machine, one actor per core), on the same folder; prints a Markdown row each.

    python benchmarks/bench_batch.py --files 24 --seconds 10      # about 3 minutes on 2 cores

Wall time of the whole command, as a user sees it: imports, model loads and, for Ray, starting
the local instance and its actors. The load average before and after is printed with the rows.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_folder(folder: Path, files: int, seconds: float, rate: int = 16000) -> None:
    """``files`` mono noise clips of ``seconds`` at ``rate`` (band-limited input's rate)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(files):
        x = 0.1 * rng.standard_normal(int(rate * seconds)).astype(np.float32)
        sf.write(folder / f"clip{i:03d}.flac", x, rate)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=24, help="clips in the folder (default 24)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per clip (default 10)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run both this many times, alternating (default 1)")
    args = p.parse_args()
    rtbwe = [sys.executable, "-m", "rtbwe", "process"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        make_folder(folder, args.files, args.seconds)
        print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs")
        print("| runner (load average after) | files | audio s | wall s | files/min | "
              "audio min / wall min |")
        print("|---|---:|---:|---:|---:|---:|")
        runners = [("rtbwe process (1 process, 1 thread)", []),
                   ("rtbwe process --ray local (1 actor per core, 1 thread each)",
                    ["--ray", "local"])]
        for i, (name, extra) in enumerate(runners * args.rounds):
            out = Path(tmp) / f"out-{i}"
            out.mkdir()
            wall = timed(rtbwe + [str(folder), str(out), "--quiet", *extra])
            assert len(list(out.glob("*.wav"))) == args.files
            audio = args.files * args.seconds
            print(f"| {name} ({os.getloadavg()[0]:.1f}) | {args.files} | {audio:.0f} | "
                  f"{wall:.1f} | {args.files / wall * 60:.1f} | {audio / wall:.2f} |", flush=True)
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
