"""Numba framing kernels: cut a signal into overlapping windows, copy and sanitise blocks.

All kernels write into buffers the caller preallocated and return nothing but counts, so the
streaming hot path allocates no memory. Arrays are float32 and C-contiguous; ranges are given
as integer offsets into whole buffers (slices would change the Numba type and force a compile
in the audio thread). :mod:`rtbwe.kernels.reference` holds a plain NumPy twin of each kernel.

Batch layout (``channel``-major, so stereo runs as one batch)::

    signal (channels, samples)              frames (channels * num_frames, window_samples)
    ch0: |--f0--|                           row 0              = ch0 frame 0
    ch0:    |--f1--|          ---->         row 1              = ch0 frame 1
    ch1: |--f0--|                           row num_frames     = ch1 frame 0
           ^ start + f * hop_samples
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def frame_signal(signal: np.ndarray, start: int, hop_samples: int, num_frames: int,
                 frames: np.ndarray) -> None:
    """Copy ``num_frames`` windows per channel out of ``signal`` into ``frames``.

    signal: (channels, samples) float32; frames: (>= channels * num_frames, window_samples).
    Row ``c * num_frames + f`` of ``frames`` receives
    ``signal[c, start + f * hop_samples : start + f * hop_samples + window_samples]``.
    """
    channels = signal.shape[0]
    window_samples = frames.shape[1]
    last = start + (num_frames - 1) * hop_samples + window_samples
    if num_frames > 0 and (start < 0 or last > signal.shape[1]):
        raise ValueError("frame_signal: frames run past the signal buffer")
    if channels * num_frames > frames.shape[0]:
        raise ValueError("frame_signal: frames buffer has too few rows")
    for c in range(channels):
        for f in range(num_frames):
            offset = start + f * hop_samples
            src, dst = signal[c, offset:offset + window_samples], frames[c * num_frames + f]
            for i in range(window_samples):
                dst[i] = src[i]


@njit(cache=True, nogil=True, error_model="numpy")
def copy_sanitised(source: np.ndarray, dest: np.ndarray, dest_start: int) -> int:
    """Copy ``source`` (channels, n) into ``dest[:, dest_start:dest_start + n]``, writing 0
    for every NaN or +-Inf sample. Returns how many samples were replaced."""
    channels, n = source.shape
    if dest_start < 0 or dest_start + n > dest.shape[1] or channels != dest.shape[0]:
        raise ValueError("copy_sanitised: destination buffer too small")
    replaced = 0
    for c in range(channels):
        src, dst = source[c], dest[c, dest_start:dest_start + n]
        for i in range(n):  # branch-free and 0-based, so LLVM vectorises it
            value = src[i]
            finite = value - value == 0.0  # False for NaN and +-Inf
            dst[i] = value if finite else np.float32(0.0)
            replaced += not finite
    return replaced


@njit(cache=True, nogil=True, error_model="numpy")
def replace_nonfinite(buffer: np.ndarray, rows: int) -> int:
    """Zero NaN/Inf samples in the first ``rows`` rows of ``buffer`` (rows, samples) in place.
    Returns how many samples were replaced."""
    replaced = 0
    for r in range(rows):
        row = buffer[r]
        for i in range(row.shape[0]):  # branch-free, so LLVM vectorises it
            value = row[i]
            finite = value - value == 0.0
            row[i] = value if finite else np.float32(0.0)
            replaced += not finite
    return replaced


@njit(cache=True, nogil=True, error_model="numpy")
def shift_left(buffer: np.ndarray, shift: int, length: int) -> None:
    """Move ``buffer[:, shift:shift + length]`` to ``buffer[:, :length]`` in place (no temporary)
    and zero ``buffer[:, length:length + shift]``. buffer: (channels, capacity)."""
    if shift < 0 or shift + length > buffer.shape[1]:
        raise ValueError("shift_left: range runs past the buffer")
    for c in range(buffer.shape[0]):
        row = buffer[c]
        moved = row[shift:shift + length]
        for i in range(length):  # forward copy: safe in place since shift >= 0
            row[i] = moved[i]
        row[length:length + shift] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def ingest_and_frame(block: np.ndarray, inbuf: np.ndarray, in_fill: int, hop_samples: int,
                     frames: np.ndarray) -> tuple[int, int, int]:
    """One streaming step's input side, fused so a block costs a single kernel call.

    Appends ``block`` (channels, n) to ``inbuf[:, :in_fill]`` (non-finite -> 0), frames every
    complete window into ``frames`` (rows channel-major), and drops the consumed hops from
    the front of ``inbuf``. Returns ``(num_frames, new_in_fill, replaced_samples)``.
    """
    replaced = copy_sanitised(block, inbuf, in_fill)
    in_fill += block.shape[1]
    window_samples = frames.shape[1]
    num_frames = 0
    if in_fill >= window_samples:
        num_frames = (in_fill - window_samples) // hop_samples + 1
        frame_signal(inbuf, np.int64(0), hop_samples, num_frames, frames)  # not Literal[int](0)
        consumed = num_frames * hop_samples
        in_fill -= consumed
        shift_left(inbuf, consumed, in_fill)
    return num_frames, in_fill, replaced


@njit(cache=True, nogil=True, error_model="numpy")
def pop_front(buffer: np.ndarray, fill: int, out: np.ndarray) -> int:
    """Move the first ``out.shape[1]`` samples of ``buffer[:, :fill]`` into ``out`` and shift
    the rest to the front. Returns the new fill."""
    n = out.shape[1]
    if n > fill:
        raise ValueError("pop_front: fewer samples buffered than requested")
    for c in range(buffer.shape[0]):
        src, dst = buffer[c], out[c]
        for i in range(n):
            dst[i] = src[i]
    shift_left(buffer, n, fill - n)
    return fill - n
