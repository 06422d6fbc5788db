"""The detected-band lock with its Numba kernels against the same lock with their NumPy twins.

    python benchmarks/bench_lock.py [--rounds 2000]

Issue 14. The lock's gains and writes (gain table, new-content gate, optional roll-off gate,
level cap, ``input + g * high``) run in :mod:`rtbwe.kernels.lock`; before the eighth session
they were a dozen NumPy calls and fancy-indexed copies per hop, which is what
:mod:`rtbwe.kernels.reference` keeps as their twins. (This script first measured the kernel as
a proposal, ``bench_lock_fft.py``, with the FFT size that the seventh session ported.)

Two default extenders (ONNX Runtime, 1 thread, 1024 / 768), one with the twins swapped in,
first stream the same 400 hops of noise low-passed at 6 kHz (largest output difference
printed), then stream side by side (:class:`rtbwe.benchmarking.InterleavedStreams`, low-passed
noise so the lock works on every window) with each lock's ``apply`` timed.
"""
from __future__ import annotations

import argparse
import numpy as np

from rtbwe.benchmarking import InterleavedStreams, build_extender
from rtbwe.kernels import reference

RATE, HOP = 48000, 768


def _lowpassed(hops: int, seed: int) -> np.ndarray:
    noise = 0.1 * np.random.default_rng(seed).standard_normal(hops * HOP)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(noise.size, 1.0 / RATE) >= 6000.0] = 0.0
    return np.fft.irfft(spectrum, noise.size).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    extenders = {"numba kernels": build_extender("default", "onnx", 1),
                 "numpy twins": build_extender("default", "onnx", 1)}
    for bwe in extenders.values():
        bwe.prepare(1, HOP)
    extenders["numpy twins"]._stream.path.lock.kernels = reference
    x = _lowpassed(400, 1)
    outs = [np.concatenate([bwe.process(x[None, i:i + HOP], RATE, reset=False)
                            for i in range(0, x.size, HOP)], axis=1)
            for bwe in extenders.values()]
    print(f"largest output difference over 400 hops "
          f"{np.abs(outs[0] - outs[1]).max():.2e} (output rms {np.sqrt(np.mean(outs[0] ** 2)):.3f})")
    for bwe in extenders.values():
        bwe.reset()
    streams = InterleavedStreams(extenders, 1, RATE, seed=0, lowpass_hz=6000.0)
    streams.report(args.rounds, streams.time_lock_applies())

if __name__ == "__main__":
    main()
