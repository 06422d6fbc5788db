"""Numba weighted overlap-add (demucs ``apply_model`` / encodec ``_linear_overlap_add``).

Each network output window is multiplied by a synthesis window and summed into an
accumulator; the window itself is summed into ``weight_sum``. Finished samples are divided by
their summed weight, which must be > 0 everywhere (checked, not assumed)::

    acc[c, start + f*hop + i]   += window[i] * frames[c*F + f, i]
    weight_sum[start + f*hop + i] += window[i]
    out[c, j] = acc[c, acc_start + j] / weight_sum[acc_start + j]

With ``frames`` equal to the framed input the result is the input exactly, for any window
whose summed weight is positive, which is what the identity tests check.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .framing import replace_nonfinite


@njit(cache=True, nogil=True, error_model="numpy")
def overlap_add(frames: np.ndarray, num_frames: int, window: np.ndarray, hop_samples: int,
                acc: np.ndarray, weight_sum: np.ndarray, start: int) -> None:
    """Add windowed ``frames`` into ``acc`` and the window into ``weight_sum``.

    frames: (>= channels * num_frames, window_samples), channel-major rows;
    window: (window_samples,); acc: (channels, capacity); weight_sum: (capacity,).
    Frame ``f`` lands at ``acc[:, start + f * hop_samples:...]``.
    """
    channels = acc.shape[0]
    window_samples = window.shape[0]
    if num_frames > 0 and start + (num_frames - 1) * hop_samples + window_samples > acc.shape[1]:
        raise ValueError("overlap_add: frames run past the accumulator")
    if start < 0 or weight_sum.shape[0] < acc.shape[1]:
        raise ValueError("overlap_add: bad start or weight_sum shorter than acc")
    for f in range(num_frames):
        offset = start + f * hop_samples
        # 1-D views indexed from 0: no negative-index wraparound check, so the loops vectorise
        weights = weight_sum[offset:offset + window_samples]
        for i in range(window_samples):
            weights[i] += window[i]
        for c in range(channels):
            frame, dst = frames[c * num_frames + f], acc[c, offset:offset + window_samples]
            for i in range(window_samples):
                dst[i] += window[i] * frame[i]


@njit(cache=True, nogil=True, error_model="numpy")
def normalise(acc: np.ndarray, weight_sum: np.ndarray, acc_start: int, num_samples: int,
              out: np.ndarray, out_start: int) -> None:
    """``out[:, out_start + j] = acc[:, acc_start + j] / weight_sum[acc_start + j]`` for
    ``j < num_samples``.

    Raises ValueError if a summed weight is not > 0 (a gap between windows).
    acc: (channels, capacity); weight_sum: (capacity,); out: (channels, m).
    """
    if out_start < 0 or out_start + num_samples > out.shape[1]:
        raise ValueError("normalise: output buffer too small")
    if acc_start < 0 or acc_start + num_samples > acc.shape[1]:
        raise ValueError("normalise: range runs past the accumulator")
    weights = weight_sum[acc_start:acc_start + num_samples]
    smallest = np.inf
    for j in range(num_samples):
        smallest = min(smallest, weights[j])
    if num_samples > 0 and not smallest > 0.0:
        raise ValueError("normalise: summed window weight is not > 0; windows leave a gap")
    for c in range(acc.shape[0]):
        src = acc[c, acc_start:acc_start + num_samples]
        dst = out[c, out_start:out_start + num_samples]
        for j in range(num_samples):
            dst[j] = src[j] / weights[j]


@njit(cache=True, nogil=True, error_model="numpy")
def shift_accumulator(acc: np.ndarray, weight_sum: np.ndarray, shift: int, length: int) -> None:
    """Drop the first ``shift`` samples of ``acc``/``weight_sum``, move ``length`` samples to
    the front and zero what follows (in place, no temporary)."""
    if shift < 0 or shift + length > acc.shape[1]:
        raise ValueError("shift_accumulator: range runs past the buffer")
    moved = weight_sum[shift:shift + length]
    for i in range(length):
        weight_sum[i] = moved[i]
    weight_sum[length:length + shift] = 0.0
    for c in range(acc.shape[0]):
        row = acc[c]
        moved = row[shift:shift + length]
        for i in range(length):  # forward copy: safe in place since shift >= 0
            row[i] = moved[i]
        row[length:length + shift] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def accumulate_and_emit(frames: np.ndarray, num_frames: int, window: np.ndarray,
                        hop_samples: int, acc: np.ndarray, weight_sum: np.ndarray, skip: int,
                        out: np.ndarray, out_fill: int) -> tuple[int, int]:
    """One streaming step's output side, fused into a single kernel call.

    Zeroes non-finite network outputs, overlap-adds ``num_frames`` frames at ``acc[:, 0:]``,
    writes the ``num_frames * hop_samples`` now-final samples (minus the first ``skip``)
    normalised to ``out[:, out_fill:]`` and keeps the ``window - hop`` partial samples at the
    front of ``acc``. Returns ``(new_out_fill, replaced_samples)``.
    """
    channels = acc.shape[0]
    replaced = replace_nonfinite(frames, channels * num_frames)
    overlap_add(frames, num_frames, window, hop_samples, acc, weight_sum, np.int64(0))
    consumed = num_frames * hop_samples
    normalise(acc, weight_sum, skip, consumed - skip, out, out_fill)
    shift_accumulator(acc, weight_sum, consumed, window.shape[0] - hop_samples)
    return out_fill + consumed - skip, replaced
