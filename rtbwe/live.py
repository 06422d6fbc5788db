"""Live streaming core: an audio callback that only copies, and an inference worker thread.

:class:`LiveSession` knows nothing about audio devices (see :mod:`rtbwe.live_device`); its
:meth:`~LiveSession.callback` has sounddevice's signature, so tests can drive it directly.

Timeline, in frames at ``sample_rate`` (``B`` = block, ``D = buffer_blocks * B``)::

    callback k:  input frames [kB, kB+B) -> input ring          (publish)
                 output ring frames [kB, kB+B) -> speakers     (or fallback if not published)
    worker:      input ring [c, c+n) -> processor.process(reset=False) -> output ring [c+D, c+D+n)

The processor delays by ``latency_samples`` itself, so the speakers play the processed input
from ``latency_frames = processor.latency_samples + D`` frames ago - exactly, whatever the
worker's timing, because the output ring is addressed by output time. The worker must deliver
the frames of callback ``k`` before callback ``k + buffer_blocks``; when it does not, the
callback plays the dry input from ``latency_frames`` ago (or silence) for the missing frames and
counts them (``late_frames``). The callback never allocates, blocks, waits for the worker or
runs the model.

When the worker falls a whole ring behind, it skips ahead (``dropped_frames``) and resets the
processor. The output stays gapless: the worker writes the fallback (the dry input from
``latency_frames`` ago, or silence) into every output frame the skip left unwritten and into
the processor's first ``latency_samples`` frames after the reset, which are its priming zeros,
not audio (``primed_frames``). So with ``fallback="dry"`` no stretch of digital silence is ever
played while the input is not silent.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .ringbuffer import SampleRing, next_power_of_two

__all__ = ["LiveSession", "LiveStats", "FALLBACKS", "auto_buffer_blocks", "request_realtime"]

FALLBACKS = ("dry", "silence")
GIL_SWITCH_INTERVAL_S = 0.0005  # let the callback thread take the GIL within 0.5 ms


@dataclass
class LiveStats:
    """Counters. The callback writes the first group, the worker the second: no shared writes."""

    callbacks: int = 0
    callback_frames: int = 0
    xruns: int = 0               # callbacks whose CallbackFlags reported any over/underflow
    input_overflows: int = 0
    output_underflows: int = 0
    late_blocks: int = 0         # callbacks that played fallback for some frames
    late_frames: int = 0         # frames played from the fallback (dry or silence)
    # worker
    worker_chunks: int = 0
    worker_frames: int = 0
    worker_busy_s: float = 0.0   # time inside processor.process
    dropped_frames: int = 0      # input frames skipped after the worker fell a ring behind
    primed_frames: int = 0       # output frames of processor priming replaced by the fallback
    nonfinite_samples: int = 0   # NaN/Inf in the processor output, replaced by 0


def request_realtime(priority: int) -> str:
    """Ask Linux to run the calling thread under SCHED_FIFO at ``priority`` (1-99), so busy
    processes at normal priority no longer preempt it; JACK's own threads usually run at
    70-95, so stay below them. Needs root or an rtprio limit (the ``audio`` group's). Processes
    the thread starts do not inherit it (SCHED_RESET_ON_FORK: a child busy loop at real-time
    priority would starve the machine). Returns what was granted, or why not (the thread then
    keeps its normal priority)."""
    if not 1 <= int(priority) <= 99:
        raise ValueError(f"realtime priority must be 1-99, got {priority!r}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0),
                              os.sched_param(int(priority)))
    except AttributeError:
        return "SCHED_FIFO not available on this platform: normal priority"
    except OSError as err:
        return f"SCHED_FIFO {priority} not granted ({err.strerror or err}): normal priority"
    return f"SCHED_FIFO {priority}"


def auto_buffer_blocks(processor: Any, block_frames: int) -> int:
    """Blocks to queue so the worker has one processor hop of time: ``ceil(hop / block)``,
    at least 2."""
    hop = int(getattr(processor, "hop_samples", 0) or 0)
    return max(2, -(-hop // block_frames))


class LiveSession:
    """Ring buffers, the audio callback and the worker thread around one processor.

    Args:
        processor: ``rtbwe.BandwidthExtender``, ``rtbwe.Chain`` or any object with
            ``process(x, sample_rate, buffer_size, reset)``, ``reset()``, ``latency_samples``.
        sample_rate: stream rate in Hz (the processor's rate).
        block_frames: frames per audio callback (sounddevice ``blocksize``).
        channels: channels in and out.
        buffer_blocks: output blocks queued ahead of the speakers (>= 1): the worker's deadline
            and the buffering part of the latency. ``None``: enough blocks to cover one hop of
            the processor (``hop_samples``; a BandwidthExtender runs the network once per hop,
            so one hop's inference must fit in the queue), and at least 2.
        fallback: ``"dry"`` (the input, delayed by the same latency) or ``"silence"`` for frames
            the worker has not delivered in time.
        worker_priority: None (default) or 1-99: the worker thread asks for SCHED_FIFO at
            this priority (:func:`request_realtime`; ``priority_note`` says what it got).
    """

    def __init__(self, processor: Any, sample_rate: int, block_frames: int, channels: int = 1,
                 buffer_blocks: int | None = None, fallback: str = "dry",
                 max_chunk_frames: int | None = None,
                 worker_priority: int | None = None) -> None:
        for name, value in (("block_frames", block_frames), ("channels", channels),
                            ("buffer_blocks", buffer_blocks), ("max_chunk_frames",
                                                               max_chunk_frames)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                flag = {"block_frames": "--block-size", "channels": "--channels",
                        "buffer_blocks": "--buffer-blocks"}.get(name, name)
                raise ValueError(f"{name} ({flag}) must be a whole number >= 1, got {value!r}")
        if buffer_blocks is None:
            buffer_blocks = auto_buffer_blocks(processor, block_frames)
        if worker_priority is not None and (
                isinstance(worker_priority, bool) or not isinstance(worker_priority, int)
                or not 1 <= worker_priority <= 99):
            raise ValueError(f"worker_priority (--realtime-priority) must be 1-99, got "
                             f"{worker_priority!r}")
        self.worker_priority, self.priority_note = worker_priority, None
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.processor = processor
        self.sample_rate = int(sample_rate)
        self.block_frames = int(block_frames)
        self.channels = int(channels)
        self.buffer_blocks = int(buffer_blocks)
        self.fallback = fallback
        self.max_chunk_frames = int(max_chunk_frames or max(4 * self.block_frames, 2048))
        self._prepare_processor()
        self.algorithmic_frames = int(processor.latency_samples)
        self.buffer_frames = self.buffer_blocks * self.block_frames
        self.latency_frames = self.algorithmic_frames + self.buffer_frames
        # Room for the latency, a worker that is a whole chunk behind, and a large callback.
        self.max_callback_frames = max(8 * self.block_frames, 8192)
        capacity = next_power_of_two(2 * (self.latency_frames + self.max_chunk_frames
                                          + self.max_callback_frames))
        self.input_ring = SampleRing(capacity, self.channels)
        self.output_ring = SampleRing(capacity, self.channels)
        self._chunk = np.zeros((self.channels, self.max_chunk_frames), np.float32)
        self._fallback = np.zeros((self.max_chunk_frames, self.channels), np.float32)
        self._priming_until = 0  # input frames before this one come out as processor priming
        self.stats = LiveStats()
        self.error: BaseException | None = None
        self._consumed_frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_s = 0.0
        self._saved_switch_interval: float | None = None
        self.reset()

    def _prepare_processor(self) -> None:
        from .chain import Chain

        if isinstance(self.processor, Chain):
            self.processor.prepare(self.sample_rate, self.channels, self.block_frames)
        elif callable(getattr(self.processor, "prepare", None)):
            try:  # BandwidthExtender.prepare(channels, block_samples): allocate now
                self.processor.prepare(self.channels, self.max_chunk_frames)
            except TypeError:
                pass

    # -- timing ------------------------------------------------------------------------------
    @property
    def latency_ms(self) -> float:
        """Algorithmic plus buffering latency (device latency not included)."""
        return 1000.0 * self.latency_frames / self.sample_rate

    @property
    def algorithmic_ms(self) -> float:
        return 1000.0 * self.algorithmic_frames / self.sample_rate

    @property
    def buffer_ms(self) -> float:
        return 1000.0 * self.buffer_frames / self.sample_rate

    def worker_load(self) -> float:
        """Fraction of wall time the worker spent inside ``processor.process``."""
        elapsed = time.perf_counter() - self._started_s if self._started_s else 0.0
        return self.stats.worker_busy_s / elapsed if elapsed > 0 else 0.0

    def snapshot(self) -> LiveStats:
        return replace(self.stats)

    # -- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear rings and processor state (only while stopped)."""
        if self._thread is not None:
            raise RuntimeError("stop() the session before reset()")
        self.processor.reset()
        self.input_ring.clear()
        self.output_ring.clear()
        self.output_ring.written_frames = self.buffer_frames  # the first D frames: silence
        self._consumed_frames = 0
        self._priming_until = 0  # priming of a fresh stream is output for silent input

    def start(self) -> "LiveSession":
        """Start the worker thread (before the audio stream starts calling back)."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._started_s = time.perf_counter()
        self._thread = threading.Thread(target=self._work, name="rtbwe-live-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join the worker; restores the interpreter's GIL switch interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None

    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the audio callback ------------------------------------------------------------------
    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any,
                 status: Any) -> None:
        """sounddevice callback: ``indata``/``outdata`` float32 ``(frames, channels)``.

        Copies ``indata`` into the input ring, fills all of ``outdata`` from the output ring or
        the fallback, counts ``status`` flags. No allocation of audio buffers, no locks, no
        model.
        """
        stats = self.stats
        if status:
            stats.xruns += 1
            if status.input_overflow:
                stats.input_overflows += 1
            if status.output_underflow:
                stats.output_underflows += 1
        start = self.input_ring.written_frames
        self.input_ring.write(indata)
        ready = self.output_ring.written_frames - start  # frames of this block delivered
        if ready >= frames:
            self.output_ring.read(start, outdata)
        else:
            ready = max(ready, 0)
            if ready:
                self.output_ring.read(start, outdata[:ready])
            missing = outdata[ready:]
            dry_start = start + ready - self.latency_frames
            if self.fallback == "dry" and dry_start >= 0:
                self.input_ring.read(dry_start, missing)
            else:
                missing.fill(0.0)
            stats.late_blocks += 1
            stats.late_frames += frames - ready
        stats.callbacks += 1
        stats.callback_frames += frames

    # -- the worker --------------------------------------------------------------------------
    def _work(self) -> None:
        poll_s = min(0.001, 0.25 * self.block_frames / self.sample_rate)
        if self.worker_priority is not None:
            self.priority_note = request_realtime(self.worker_priority)
        try:
            while not self._stop.is_set():
                if not self.process_available():
                    time.sleep(poll_s)
        except BaseException as err:  # reported by the run loop; the callback keeps playing
            self.error = err

    def process_available(self) -> int:
        """Run the processor on input frames the callback has published; returns frames done.

        Called in a loop by the worker thread (tests may call it directly instead of
        :meth:`start`)."""
        stats = self.stats
        available = self.input_ring.written_frames - self._consumed_frames
        too_far = self.input_ring.capacity_frames - self.max_callback_frames - self.latency_frames
        if available > too_far:  # the callback is about to overwrite unread input: skip ahead
            skip = available - self.block_frames
            stats.dropped_frames += skip
            old = self._consumed_frames
            self._consumed_frames += skip
            self.processor.reset()
            self._priming_until = self._consumed_frames + self.algorithmic_frames
            # output frames the skip leaves unwritten; those before the callback's position
            # (about the new consumed frame) have been played already
            new_start = self._consumed_frames + self.buffer_frames
            self.write_fallback(max(old + self.buffer_frames, self._consumed_frames), new_start)
            available = self.block_frames
        if available <= 0:
            return 0
        n = min(available, self.max_chunk_frames)
        chunk = self._chunk[:, :n]
        self.input_ring.read_channels_first(self._consumed_frames, chunk)
        started = time.perf_counter()
        out = self.processor.process(chunk, self.sample_rate, buffer_size=n, reset=False)
        stats.worker_busy_s += time.perf_counter() - started
        out = np.asarray(out, dtype=np.float32).reshape(self.channels, n)
        finite = np.isfinite(out)
        if not finite.all():
            stats.nonfinite_samples += int(out.size - np.count_nonzero(finite))
            out = np.where(finite, out, np.float32(0.0))
        start = self._consumed_frames + self.buffer_frames
        primed = min(n, self._priming_until - self._consumed_frames)
        if primed > 0:  # the processor's priming zeros after a reset: play the fallback
            self.output_ring.write_channels_first_at(start + primed, out[:, primed:])
            self.write_fallback(start, start + primed)
            stats.primed_frames += primed
        else:
            self.output_ring.write_channels_first_at(start, out)
        self._consumed_frames += n
        self.output_ring.written_frames = self._consumed_frames + self.buffer_frames  # publish
        stats.worker_chunks += 1
        stats.worker_frames += n
        return n

    def write_fallback(self, first_frame: int, stop_frame: int) -> None:
        """Write the fallback into output frames ``[first_frame, stop_frame)`` (not published):
        the input from ``latency_frames`` earlier (``"dry"``), or zeros. Worker side only."""
        for start in range(first_frame, stop_frame, self.max_chunk_frames):
            n = min(self.max_chunk_frames, stop_frame - start)
            piece = self._fallback[:n]
            silent = n if self.fallback != "dry" else min(n, max(0, self.latency_frames - start))
            piece[:silent] = 0.0  # before the stream began, the input was silence
            if silent < n:
                self.input_ring.read(start + silent - self.latency_frames, piece[silent:])
            self.output_ring.write_at(start, piece)

    def status_line(self, device_latency_s: float = 0.0) -> str:
        """One line: total latency, worker load, xruns, late frames, non-finite samples."""
        s = self.stats
        proc_stats = getattr(self.processor, "stats", None)
        nonfinite = s.nonfinite_samples + int(getattr(proc_stats, "nonfinite_input_samples", 0)) \
            + int(getattr(proc_stats, "nonfinite_output_samples", 0))
        device_ms = 1000.0 * device_latency_s
        return (f"latency {self.latency_ms + device_ms:6.1f} ms (model {self.algorithmic_ms:.1f}"
                f" + buffer {self.buffer_ms:.1f} + device {device_ms:.1f}) | worker load "
                f"{self.worker_load():4.0%} | xruns {s.xruns} | late {s.late_blocks} blocks "
                f"({s.late_frames} frames, {self.fallback}) | dropped {s.dropped_frames} | "
                f"non-finite {nonfinite}")
