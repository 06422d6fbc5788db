"""Preallocated, indexed sample rings shared by the audio callback and the worker thread.

A :class:`SampleRing` stores float32 frames ``(capacity_frames, channels)`` - frames-major, the
layout sounddevice hands the callback - addressed by *absolute* frame index: frame ``i`` lives
at row ``i % capacity_frames``. Each ring has one writer and one reader; the writer publishes
progress by storing a Python int (``written_frames``), which is atomic under the GIL, after the
data is in place. Nothing here allocates array memory after construction; ``write``/``read``
are at most two ``np.copyto`` calls.

The live path uses two rings::

    callback ──write──▶ input ring ──read──▶ worker: processor.process(..., reset=False)
    callback ◀──read─── output ring ◀──write_at(frame + buffer_frames)── worker

The output ring is addressed by output time, so a late worker can never shift the timeline:
the callback reads frame ``t`` if the worker published it, else it plays a fallback.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SampleRing", "next_power_of_two"]


def next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class SampleRing:
    """Ring of ``capacity_frames`` float32 frames of ``channels`` samples each (zero-filled)."""

    def __init__(self, capacity_frames: int, channels: int) -> None:
        if capacity_frames < 1 or channels < 1:
            raise ValueError("capacity_frames and channels must be >= 1")
        self.capacity_frames = int(capacity_frames)
        self.channels = int(channels)
        self.data = np.zeros((self.capacity_frames, self.channels), np.float32)
        # Absolute index one past the last frame the writer has published.
        self.written_frames = 0

    def clear(self) -> None:
        self.data.fill(0.0)
        self.written_frames = 0

    def _spans(self, start_frame: int, frames: int) -> tuple[int, int, int]:
        """Row of ``start_frame``, frames before the wrap, frames after it."""
        if frames > self.capacity_frames:
            raise ValueError(f"{frames} frames do not fit a ring of {self.capacity_frames}")
        row = start_frame % self.capacity_frames
        first = min(frames, self.capacity_frames - row)
        return row, first, frames - first

    def write_at(self, start_frame: int, block: np.ndarray) -> None:
        """Copy ``block`` ``(frames, channels)`` into frames ``[start_frame, start_frame + n)``.
        Does not publish: the writer sets ``written_frames`` when it is done."""
        frames = block.shape[0]
        row, first, rest = self._spans(start_frame, frames)
        np.copyto(self.data[row:row + first], block[:first])
        if rest:
            np.copyto(self.data[:rest], block[first:])

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` ``(frames, channels)`` at ``written_frames`` and publish it."""
        self.write_at(self.written_frames, block)
        self.written_frames += block.shape[0]

    def read(self, start_frame: int, out: np.ndarray) -> None:
        """Copy frames ``[start_frame, start_frame + len(out))`` into ``out``
        ``(frames, channels)``; the caller checks they are published and not yet overwritten."""
        frames = out.shape[0]
        row, first, rest = self._spans(start_frame, frames)
        np.copyto(out[:first], self.data[row:row + first])
        if rest:
            np.copyto(out[first:], self.data[:rest])

    def read_channels_first(self, start_frame: int, out: np.ndarray) -> None:
        """Like :meth:`read` into ``out`` ``(channels, frames)`` (the processor's layout)."""
        frames = out.shape[1]
        row, first, rest = self._spans(start_frame, frames)
        np.copyto(out[:, :first], self.data[row:row + first].T)
        if rest:
            np.copyto(out[:, first:], self.data[:rest].T)

    def write_channels_first_at(self, start_frame: int, block: np.ndarray) -> None:
        """Like :meth:`write_at` from ``block`` ``(channels, frames)``."""
        frames = block.shape[1]
        row, first, rest = self._spans(start_frame, frames)
        np.copyto(self.data[row:row + first], block[:, :first].T)
        if rest:
            np.copyto(self.data[:rest], block[:, first:].T)
