"""Plain NumPy twins of the Numba kernels, with the same signatures and semantics.

They are the specification the tests compare :mod:`framing`, :mod:`overlap`, :mod:`spectrum`
and :mod:`lock` against, and the baseline the kernel benchmarks measure the speed-up over.
Not used in the hot path.
"""
from __future__ import annotations

import numpy as np


def frame_signal(signal: np.ndarray, start: int, hop_samples: int, num_frames: int,
                 frames: np.ndarray) -> None:
    """signal (channels, samples) -> frames rows ``c * num_frames + f`` (see framing.py)."""
    channels = signal.shape[0]
    window_samples = frames.shape[1]
    if num_frames <= 0:
        return
    if start < 0 or start + (num_frames - 1) * hop_samples + window_samples > signal.shape[1]:
        raise ValueError("frame_signal: frames run past the signal buffer")
    if channels * num_frames > frames.shape[0]:
        raise ValueError("frame_signal: frames buffer has too few rows")
    view = np.lib.stride_tricks.sliding_window_view(signal[:, start:], window_samples, axis=-1)
    picked = view[:, : (num_frames - 1) * hop_samples + 1 : hop_samples]
    frames[: channels * num_frames] = picked.reshape(channels * num_frames, window_samples)


def copy_sanitised(source: np.ndarray, dest: np.ndarray, dest_start: int) -> int:
    n = source.shape[1]
    if dest_start < 0 or dest_start + n > dest.shape[1] or source.shape[0] != dest.shape[0]:
        raise ValueError("copy_sanitised: destination buffer too small")
    bad = ~np.isfinite(source)
    dest[:, dest_start:dest_start + n] = np.where(bad, 0.0, source)
    return int(bad.sum())


def replace_nonfinite(buffer: np.ndarray, rows: int) -> int:
    bad = ~np.isfinite(buffer[:rows])
    buffer[:rows][bad] = 0.0
    return int(bad.sum())


def shift_left(buffer: np.ndarray, shift: int, length: int) -> None:
    if shift < 0 or shift + length > buffer.shape[1]:
        raise ValueError("shift_left: range runs past the buffer")
    buffer[:, :length] = buffer[:, shift:shift + length].copy()
    buffer[:, length:length + shift] = 0.0


def overlap_add(frames: np.ndarray, num_frames: int, window: np.ndarray, hop_samples: int,
                acc: np.ndarray, weight_sum: np.ndarray, start: int) -> None:
    """Weighted overlap-add of channel-major ``frames`` into ``acc`` (see overlap.py)."""
    channels = acc.shape[0]
    window_samples = window.shape[0]
    if num_frames > 0 and start + (num_frames - 1) * hop_samples + window_samples > acc.shape[1]:
        raise ValueError("overlap_add: frames run past the accumulator")
    if start < 0 or weight_sum.shape[0] < acc.shape[1]:
        raise ValueError("overlap_add: bad start or weight_sum shorter than acc")
    weighted = frames[: channels * num_frames].reshape(channels, num_frames, window_samples)
    weighted = weighted * window
    for f in range(num_frames):
        offset = start + f * hop_samples
        acc[:, offset:offset + window_samples] += weighted[:, f]
        weight_sum[offset:offset + window_samples] += window


def normalise(acc: np.ndarray, weight_sum: np.ndarray, acc_start: int, num_samples: int,
              out: np.ndarray, out_start: int) -> None:
    if out_start < 0 or out_start + num_samples > out.shape[1]:
        raise ValueError("normalise: output buffer too small")
    if acc_start < 0 or acc_start + num_samples > acc.shape[1]:
        raise ValueError("normalise: range runs past the accumulator")
    stop = acc_start + num_samples
    weights = weight_sum[acc_start:stop]
    if not np.all(weights > 0):
        raise ValueError("normalise: summed window weight is not > 0; windows leave a gap")
    out[:, out_start:out_start + num_samples] = acc[:, acc_start:stop] / weights


def shift_accumulator(acc: np.ndarray, weight_sum: np.ndarray, shift: int, length: int) -> None:
    if shift < 0 or shift + length > acc.shape[1]:
        raise ValueError("shift_accumulator: range runs past the buffer")
    shift_left(acc, shift, length)
    shift_left(weight_sum[None, :], shift, length)


def ingest_and_frame(block: np.ndarray, inbuf: np.ndarray, in_fill: int, hop_samples: int,
                     frames: np.ndarray) -> tuple[int, int, int]:
    replaced = copy_sanitised(block, inbuf, in_fill)
    in_fill += block.shape[1]
    window_samples = frames.shape[1]
    num_frames = 0
    if in_fill >= window_samples:
        num_frames = (in_fill - window_samples) // hop_samples + 1
        frame_signal(inbuf, 0, hop_samples, num_frames, frames)
        in_fill -= num_frames * hop_samples
        shift_left(inbuf, num_frames * hop_samples, in_fill)
    return num_frames, in_fill, replaced


def pop_front(buffer: np.ndarray, fill: int, out: np.ndarray) -> int:
    n = out.shape[1]
    if n > fill:
        raise ValueError("pop_front: fewer samples buffered than requested")
    out[:] = buffer[:, :n]
    shift_left(buffer, n, fill - n)
    return fill - n


def accumulate_and_emit(frames: np.ndarray, num_frames: int, window: np.ndarray,
                        hop_samples: int, acc: np.ndarray, weight_sum: np.ndarray, skip: int,
                        out: np.ndarray, out_fill: int) -> tuple[int, int]:
    replaced = replace_nonfinite(frames, acc.shape[0] * num_frames)
    overlap_add(frames, num_frames, window, hop_samples, acc, weight_sum, 0)
    consumed = num_frames * hop_samples
    normalise(acc, weight_sum, skip, consumed - skip, out, out_fill)
    shift_accumulator(acc, weight_sum, consumed, window.shape[0] - hop_samples)
    return out_fill + consumed - skip, replaced


# ---- the spectrum tracker's kernels (kernels/spectrum.py), as the tracker did them in NumPy
def window_for_fft(frames: np.ndarray, rows: int, hann: np.ndarray, max_sample: float,
                   out: np.ndarray) -> None:
    out[:rows] = np.clip(frames[:rows], -max_sample, max_sample) * hann


def accumulate_power(spectrum: np.ndarray, channels: int, num_frames: int, decay: float,
                     sums: np.ndarray, weights: np.ndarray, power: np.ndarray,
                     averaged: np.ndarray) -> None:
    rows = channels * num_frames
    power[:rows] = spectrum[:rows].real ** 2 + spectrum[:rows].imag ** 2
    by_frame = power[:rows].reshape(channels, num_frames, -1)
    mean = averaged[:rows].reshape(channels, num_frames, -1)
    for f in range(num_frames):
        sums *= decay
        sums += by_frame[:, f]
        weights[:] = weights * decay + 1.0
        mean[:, f] = sums / weights[:, None]


def window_contrast(power: np.ndarray, rows: int, cutoff_hz: np.ndarray,
                    reference_db: np.ndarray, bin_hz: float, nyquist_hz: float, guard: float,
                    excess_db: np.ndarray, below_power: np.ndarray) -> None:
    bins = power.shape[1]
    cutoff = cutoff_hz[:rows]
    k = np.clip(np.round(cutoff / bin_hz).astype(np.int64), 2, bins - 1)
    k_above = np.minimum(np.ceil(k * guard).astype(np.int64), bins - 1)
    above = np.array([power[r, k_above[r] + 1:].sum() for r in range(rows)])
    below = np.array([power[r, k[r] // 2:k[r]].sum() for r in range(rows)])
    ratio_db = 10.0 * np.log10((above + 1e-30) / (below + 1e-30))
    full = cutoff >= nyquist_hz
    ratio_db[full], below[full] = 0.0, 0.0
    excess_db[:rows] = ratio_db - reference_db[:rows]
    below_power[:rows] = below


def pooled_condition(averaged: np.ndarray, rows: int, band_of_bin: np.ndarray,
                     reference_bands: np.ndarray, cutoff_hz: np.ndarray, nyquist_hz: float,
                     floor_db: float, ceiling_db: float, scale_db: float,
                     band_power: np.ndarray, out: np.ndarray) -> None:
    bands = reference_bands.shape[0]
    pooling = (band_of_bin[:, None] == np.arange(bands)[None, :]).astype(np.float64)
    pooled = averaged[:rows] @ pooling
    reference = pooled[:, reference_bands].mean(axis=-1, keepdims=True)
    ratio = (pooled + 1e-9 * reference + 1e-30) / (reference + 1e-30)
    db = np.clip(10.0 * np.log10(ratio), floor_db, ceiling_db)
    out[:rows, :bands] = (db / scale_db).astype(np.float32)
    if out.shape[1] > bands:
        out[:rows, bands] = cutoff_hz[:rows] / nyquist_hz


# ---- the detected-band lock's kernels (kernels/lock.py), as the lock did them in NumPy
def ramp(value: np.ndarray, full: float, off: float) -> np.ndarray:
    """The lock's gates: 1 at ``full``, 0 at ``off`` (either may be the larger), linear in
    between, clipped. The Numba ``lock_gains`` inlines the same line."""
    return np.clip((value - off) / (full - off), 0.0, 1.0)


def lock_gains(cutoff_hz: np.ndarray, added: np.ndarray, edges_hz: np.ndarray,
               table_gains: np.ndarray, excess_db: np.ndarray, gate_full_db: float,
               gate_off_db: float, rolloff_db: np.ndarray, rolloff_full_db: float,
               rolloff_off_db: float, below_power: np.ndarray, max_added_ratio: float,
               hann_sq: np.ndarray, gains: np.ndarray) -> None:
    rows = len(cutoff_hz)
    g = table_gains[np.searchsorted(edges_hz, cutoff_hz, side="right")]
    if excess_db.size:
        g = g * ramp(excess_db[:rows], gate_full_db, gate_off_db)
    if rolloff_db.size:
        g = g * ramp(rolloff_db[:rows], rolloff_full_db, rolloff_off_db)
    if below_power.size:
        wide = added.astype(np.float64)
        added_power = (wide * wide) @ hann_sq
        allowed = max_added_ratio * below_power[:rows]
        g = g * np.sqrt(np.minimum(1.0, allowed / np.maximum(added_power, 1e-30)))
    gains[:rows] = g


def add_gained(inputs: np.ndarray, outputs: np.ndarray, high: np.ndarray, gains: np.ndarray,
               rows_index: np.ndarray) -> None:
    count = high.shape[0]
    scaled = (high * gains[:count, None]).astype(np.float32)
    outputs[rows_index] = inputs[rows_index] + scaled
