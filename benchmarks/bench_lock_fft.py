"""A cheaper detected-band lock, as a measured proposal (issue 14; not used by the library).

    python benchmarks/bench_lock_fft.py [--rounds 2000]

It subclasses :class:`rtbwe.passband.DetectedBandLock` and measures it against the shipped
lock in one process. It was written with two changes; the first has since moved into the
shipped lock (seventh session), so what this compares now is the second alone:

* the FFT of ``added_band`` at ``scipy.fft.next_fast_len(window + taps - 1)`` (1,280 for 1024 +
  255 taps) instead of the next power of two (2,048): the same linear convolution (now in
  ``rtbwe/passband.py``);
* ``window_gains`` and the writes of ``apply`` (gain table, gate, level cap, ``input + g *
  high``) in one Numba kernel instead of a dozen NumPy calls and fancy-indexed copies. The
  kernel has no optional roll-off gate: a lock that uses one falls back to the shipped path.

Two default extenders (ONNX Runtime, 1 thread, 1024 / 768), one with the prototype lock, first
stream the same 400 hops of noise low-passed at 6 kHz (largest output difference printed), then
stream side by side (:class:`rtbwe.benchmarking.InterleavedStreams`, low-passed noise so the
lock works on every window) with each lock's ``apply`` timed.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numba import njit

from rtbwe.benchmarking import InterleavedStreams, build_extender
from rtbwe.passband import GATE_FULL_DB, GATE_OFF_DB, DetectedBandLock

RATE, HOP = 48000, 768


@njit(cache=True, nogil=True, error_model="numpy")
def gain_and_write(inputs, outputs, high, cutoff_hz, excess_db, below_power, edges_hz, gains,
                   gate, cap, max_added_ratio, hann_sq):
    """outputs[r] = inputs[r] + g_r * high[r] for r < len(high), g_r as
    :meth:`DetectedBandLock.window_gains` (table, gate, cap). high (rows, window) float32."""
    rows, n = high.shape
    for r in range(rows):
        j = 0  # np.searchsorted(edges_hz, cutoff, side="right")
        while j < edges_hz.shape[0] and edges_hz[j] <= cutoff_hz[r]:
            j += 1
        g = gains[j]
        if gate:
            g *= min(max((GATE_OFF_DB - excess_db[r]) / (GATE_OFF_DB - GATE_FULL_DB), 0.0), 1.0)
        if cap:
            added_power = 0.0
            for i in range(n):
                value = np.float64(high[r, i])
                added_power += value * value * hann_sq[i]
            g *= np.sqrt(min(1.0, max_added_ratio * below_power[r] / max(added_power, 1e-30)))
        for i in range(n):
            outputs[r, i] = inputs[r, i] + np.float32(np.float64(high[r, i]) * g)


class ProposedLock(DetectedBandLock):
    """The shipped lock with the kernel above (rows whose cutoff is at Nyquist mixed with
    others, or a roll-off gate, fall back to the shipped path: the prototype covers the
    streaming case)."""

    def apply(self, inputs, outputs, rows, cutoffs_hz, contrast=None):
        cutoff = cutoffs_hz[:rows]
        extend = cutoff < self.nyquist_hz
        if not extend.all() or self.needs_rolloff:
            return super().apply(inputs, outputs, rows, cutoffs_hz, contrast)
        high = np.ascontiguousarray(self.added_band(inputs[:rows], outputs[:rows], cutoff))
        unused = np.zeros(rows)
        gain_and_write(inputs, outputs, high, cutoff,
                       contrast[0] if contrast else unused, contrast[1] if contrast else unused,
                       self.gain_edges_hz, self.gains, self.gate and contrast is not None,
                       self.max_added_ratio is not None and contrast is not None,
                       self.max_added_ratio or 0.0, self._hann_sq)


def _lowpassed(hops: int, seed: int) -> np.ndarray:
    noise = 0.1 * np.random.default_rng(seed).standard_normal(hops * HOP)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(noise.size, 1.0 / RATE) >= 6000.0] = 0.0
    return np.fft.irfft(spectrum, noise.size).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    extenders = {"shipped lock": build_extender("default", "onnx", 1),
                 "proposed lock": build_extender("default", "onnx", 1)}
    for bwe in extenders.values():
        bwe.prepare(1, HOP)
    proposed = extenders["proposed lock"]
    proposed._stream.path.lock = ProposedLock(RATE, proposed.window_samples,
                                              gain=proposed.extension_gain,
                                              max_added_ratio=proposed.max_added_ratio)
    x = _lowpassed(400, 1)
    outs = [np.concatenate([bwe.process(x[None, i:i + HOP], RATE, reset=False)
                            for i in range(0, x.size, HOP)], axis=1)
            for bwe in extenders.values()]
    print(f"n_fft {extenders['shipped lock']._stream.path.lock.n_fft} -> "
          f"{proposed._stream.path.lock.n_fft}; largest output difference over 400 hops "
          f"{np.abs(outs[0] - outs[1]).max():.2e} (output rms {np.sqrt(np.mean(outs[0] ** 2)):.3f})")
    times: dict[str, list[float]] = {name: [] for name in extenders}
    for name, bwe in extenders.items():
        lock, apply = bwe._stream.path.lock, bwe._stream.path.lock.apply

        def timed(*call, apply=apply, name=name):
            begun = time.perf_counter()
            apply(*call)
            times[name].append(time.perf_counter() - begun)
        lock.apply = timed
        bwe.reset()
    streams = InterleavedStreams(extenders, 1, RATE, seed=0, lowpass_hz=6000.0)
    for _ in range(100):
        streams.one_round()
    for values in times.values():
        values.clear()
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        streams.one_round()
    print(f"{args.rounds} rounds, 1-minute load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name in extenders:
        figures, apply_us = streams.figures(name, 100), 1e6 * np.asarray(times[name])
        print(f"{name:>14s}: RT {figures['rt']:.3f}, p50 {figures['p50_ms']:.2f} ms, p99 "
              f"{figures['p99_ms']:.2f} ms; lock.apply mean {apply_us.mean():.0f} us, median "
              f"{np.median(apply_us):.0f} us")


if __name__ == "__main__":
    main()
