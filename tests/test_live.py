"""LiveSession without an audio device: the callback driven by hand, the worker stepped by hand.

Everything here is deterministic: the "worker" is ``session.process_available()`` called (or
not called) between callbacks, so lateness is simulated exactly instead of timed.
"""
from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

from rtbwe.chain import Delay
from rtbwe.live import LiveSession
from rtbwe.ringbuffer import SampleRing

SR = 48000


class Flags:
    """Stand-in for sounddevice.CallbackFlags."""

    def __init__(self, input_overflow=False, output_underflow=False):
        self.input_overflow, self.output_underflow = input_overflow, output_underflow

    def __bool__(self):
        return self.input_overflow or self.output_underflow


NO_FLAGS = Flags()


class Scale:
    """A processor with known latency that is not the identity (so fallback is visible)."""

    def __init__(self, latency: int, gain: float = 0.5, nan_every: int = 0):
        self.delay, self.gain, self.nan_every, self.calls = Delay(latency), gain, nan_every, 0

    latency_samples = property(lambda self: self.delay.latency_samples)

    def reset(self):
        self.delay.reset()

    def process(self, x, sample_rate, buffer_size=8192, reset=True):
        self.calls += 1
        y = self.gain * self.delay.process(x, sample_rate, reset=reset)
        if self.nan_every:
            y[..., ::self.nan_every] = np.nan
        return y


def signal(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((frames, channels))).astype(
        np.float32)


def drive(session: LiveSession, x: np.ndarray, block: int, work_every: int = 1,
          skip_work: set[int] = frozenset()) -> np.ndarray:
    """Run ``x`` (frames, channels) through callbacks; the worker runs after callback k unless
    k is in ``skip_work`` or k % work_every != 0. Returns the output (frames, channels)."""
    out = np.zeros_like(x)
    outdata = np.zeros((block, x.shape[1]), np.float32)
    for k, start in enumerate(range(0, x.shape[0], block)):
        session.callback(x[start:start + block], outdata, block, None, NO_FLAGS)
        out[start:start + block] = outdata
        if k not in skip_work and k % work_every == 0:
            while session.process_available():
                pass
    return out


def test_ring_wraps_and_keeps_absolute_indices():
    ring = SampleRing(8, 2)
    data = np.arange(24, dtype=np.float32).reshape(12, 2)
    ring.write(data[:5])
    ring.write(data[5:11])  # wraps
    out = np.zeros((6, 2), np.float32)
    ring.read(5, out)
    np.testing.assert_array_equal(out, data[5:11])
    first = np.zeros((2, 6), np.float32)
    ring.read_channels_first(5, first)
    np.testing.assert_array_equal(first, data[5:11].T)
    assert ring.written_frames == 11


@pytest.mark.parametrize("block,buffer_blocks", [(64, 1), (256, 2), (480, 3)])
def test_output_is_input_processed_and_delayed_by_latency_frames(block, buffer_blocks):
    proc = Scale(latency=37)
    session = LiveSession(proc, SR, block, buffer_blocks=buffer_blocks)
    assert session.latency_frames == 37 + buffer_blocks * block
    x = signal(block * 60)
    y = drive(session, x, block)
    d = session.latency_frames
    np.testing.assert_allclose(y[d:], 0.5 * x[:-d], atol=1e-7)
    np.testing.assert_array_equal(y[:d], 0.0)
    assert session.stats.late_frames == 0 and session.stats.xruns == 0


def test_late_worker_plays_dry_delayed_input_and_counts_it():
    block = 128
    session = LiveSession(Scale(latency=10), SR, block, buffer_blocks=1, fallback="dry")
    x = signal(block * 40, seed=1)
    late = {10, 11, 12}  # the worker misses three deadlines in a row
    y = drive(session, x, block, skip_work=late)
    d = session.latency_frames
    # late blocks: dry input from exactly d frames ago; elsewhere: processed (gain 0.5)
    dry = np.zeros(len(x), bool)
    dry[11 * block:14 * block] = True
    np.testing.assert_allclose(y[d:][dry[d:]], x[:-d][dry[d:]], atol=1e-7)
    np.testing.assert_allclose(y[d:][~dry[d:]], 0.5 * x[:-d][~dry[d:]], atol=1e-7)
    assert session.stats.late_blocks == 3
    assert session.stats.late_frames == 3 * block


def test_late_worker_can_play_silence():
    block = 128
    session = LiveSession(Scale(latency=0), SR, block, buffer_blocks=1, fallback="silence")
    x = signal(block * 20, seed=2)
    y = drive(session, x, block, skip_work={5})
    np.testing.assert_array_equal(y[6 * block:7 * block], 0.0)
    assert session.stats.late_blocks == 1


def test_worker_far_behind_drops_input_and_recovers():
    block = 256
    session = LiveSession(Scale(latency=5), SR, block, buffer_blocks=2)
    x = signal(block * 400, seed=3)
    blocks_in_ring = session.input_ring.capacity_frames // block
    y = drive(session, x, block, skip_work=set(range(10, 10 + blocks_in_ring)))
    assert session.stats.dropped_frames > 0
    tail = slice(len(x) - 50 * block, len(x))
    d = session.latency_frames
    np.testing.assert_allclose(y[tail], 0.5 * x[tail.start - d:tail.stop - d], atol=1e-7)


def test_nonfinite_processor_output_is_replaced_and_counted():
    block = 64
    session = LiveSession(Scale(latency=0, nan_every=16), SR, block, buffer_blocks=1)
    y = drive(session, signal(block * 20, seed=4), block)
    assert np.isfinite(y).all()
    assert session.stats.nonfinite_samples == 20 * block // 16
    assert "non-finite 80" in session.status_line()


def test_callback_counts_callback_flags():
    session = LiveSession(Scale(latency=0), SR, 64)
    out = np.zeros((64, 1), np.float32)
    session.callback(signal(64), out, 64, None, Flags(input_overflow=True))
    session.callback(signal(64), out, 64, None, Flags(output_underflow=True))
    session.callback(signal(64), out, 64, None, NO_FLAGS)
    s = session.stats
    assert (s.xruns, s.input_overflows, s.output_underflows, s.callbacks) == (2, 1, 1, 3)
    assert "xruns 2" in session.status_line()


def test_callback_never_runs_the_model_nor_allocates_audio_buffers():
    block = 1024  # one audio buffer is 4 KiB: any per-call array allocation shows
    proc = Scale(latency=3)
    session = LiveSession(proc, SR, block, channels=2, buffer_blocks=2)
    calls_before = proc.calls
    x = signal(block, channels=2)
    out = np.zeros((block, 2), np.float32)
    session.callback(x, out, block, None, NO_FLAGS)  # warm
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(50):
            session.callback(x, out, block, None, NO_FLAGS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 2048, f"callback allocated {peak - base} bytes at peak"
    assert proc.calls == calls_before  # only the worker calls the processor
    # nobody worked: after the 2 queued blocks of silence, all fallback, and no crash
    assert session.stats.late_blocks == 51 - 2


def test_worker_thread_error_is_kept_and_audio_continues():
    class Broken(Scale):
        def process(self, *args, **kwargs):
            raise RuntimeError("boom")

    block = 64
    session = LiveSession(Broken(latency=0), SR, block, buffer_blocks=1)
    session.start()
    try:
        out = np.zeros((block, 1), np.float32)
        for _ in range(200):
            session.callback(signal(block), out, block, None, NO_FLAGS)
            if session.error is not None:
                break
            session._stop.wait(0.002)
    finally:
        session.stop()
    assert isinstance(session.error, RuntimeError)
    assert sys.getswitchinterval() > 0.001  # restored


def test_chain_can_run_live():
    import pedalboard as pb

    from rtbwe.chain import Chain

    chain = Chain([pb.Gain(0.0), Delay(7), pb.Resample(target_sample_rate=16000)])
    session = LiveSession(chain, SR, 256, buffer_blocks=2)
    x = signal(256 * 80, seed=6)
    y = drive(session, x, 256)
    assert session.latency_frames == chain.latency_samples + 512
    from scipy.signal import correlate

    lag = int(np.argmax(correlate(y[:, 0], x[:8000, 0], mode="valid")))  # lags 0..12480
    assert lag == session.latency_frames


def test_missing_portaudio_says_what_to_install(monkeypatch):
    from rtbwe import live_device

    class NoPortAudio:
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(live_device.LiveAudioError, match="libportaudio2"):
        live_device.import_sounddevice()


def test_missing_device_says_what_to_do():
    from rtbwe import live_device

    try:
        live_device.import_sounddevice()
    except live_device.LiveAudioError as err:
        pytest.skip(str(err))
    with pytest.raises(live_device.LiveAudioError, match="rtbwe devices|no devices"):
        live_device.resolve_device("no-such-device-xyz", "input")


def test_cli_registers_live_and_devices():
    from rtbwe.cli import build_parser

    args = build_parser().parse_args(["live", "--input", "1", "--output", "system",
                                      "--block-size", "128", "--model", "identity",
                                      "--device", "cpu", "--duration", "2.5"])
    assert (args.input, args.output, args.block_size, args.model, args.device,
            args.duration) == ("1", "system", 128, "identity", "cpu", 2.5)
    assert build_parser().parse_args(["devices"]).func.__name__ == "devices"


def test_default_queue_covers_one_model_hop():
    from rtbwe.live import auto_buffer_blocks

    class Hop(Scale):
        hop_samples = 480

    assert [auto_buffer_blocks(Hop(0), b) for b in (64, 128, 256, 512)] == [8, 4, 2, 2]
    assert LiveSession(Hop(0), SR, 64).buffer_frames == 512
    assert auto_buffer_blocks(Scale(0), 64) == 2  # no hop: two blocks


def test_c_callback_without_a_compiler_falls_back(tmp_path, monkeypatch):
    from rtbwe import ccallback

    monkeypatch.setenv("RTBWE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(ccallback, "_module", None)
    monkeypatch.setattr(ccallback, "_error", None)
    assert ccallback.available() is False
    with pytest.raises(RuntimeError, match="compiler"):
        ccallback.load()


def test_cli_live_missing_device_fails_before_loading_a_model(capsys):
    from rtbwe import live_device
    from rtbwe.cli import main

    try:
        live_device.import_sounddevice()
    except live_device.LiveAudioError as err:
        pytest.skip(str(err))
    assert main(["live", "--input", "no-such-device-xyz", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-device-xyz" in err and ("rtbwe devices" in err or "no devices" in err)


def longest_zero_run(y: np.ndarray) -> int:
    """Longest run of frames (frames, channels) that are exactly 0.0 in every channel."""
    longest = run = 0
    for silent in np.all(y == 0.0, axis=1):
        run = run + 1 if silent else 0
        longest = max(longest, run)
    return longest


@pytest.mark.parametrize("fallback_latency", [5, 700])
def test_worker_far_behind_never_plays_priming_silence(fallback_latency):
    """Issue 13: after skipping ahead the worker reset the processor and published its
    priming zeros as if they were audio, so the speakers played up to ``latency_samples`` of
    digital silence. Now every frame is the processed or the dry input, never a gap."""
    block = 256
    session = LiveSession(Scale(latency=fallback_latency), SR, block, buffer_blocks=2)
    x = signal(block * 600, seed=4)
    blocks_in_ring = session.input_ring.capacity_frames // block
    behind = set(range(10, 10 + blocks_in_ring)) | set(range(300, 300 + blocks_in_ring))
    y = drive(session, x, block, skip_work=behind)
    assert session.stats.dropped_frames > 0 and session.stats.primed_frames > 0
    d = session.latency_frames
    assert longest_zero_run(y[d:]) == 0
    delayed = x[:len(x) - d]
    processed = np.isclose(y[d:], 0.5 * delayed, atol=1e-7)
    dry = np.isclose(y[d:], delayed, atol=1e-7)
    assert np.all(processed | dry)  # nothing stale, nothing invented


def test_too_slow_model_on_the_worker_thread_keeps_output_continuous():
    """A network twice too slow for real time, in a real worker thread, with callbacks paced
    in real time: the output holds no run of zeros longer than a few samples."""
    import threading
    import time

    torch = pytest.importorskip("torch")
    from rtbwe.processor import BandwidthExtender

    class SlowIdentity(torch.nn.Module):
        def forward(self, x):
            if armed.is_set():
                time.sleep(0.04 * x.shape[0])  # 40 ms per 10.7 ms hop: 3.7x too slow
            return x

    armed = threading.Event()
    block = 256
    # eager: an exported graph would not sleep; skip_full_band=False: the network runs while
    # the bandwidth is not yet known (and on full band) too
    session = LiveSession(BandwidthExtender(SlowIdentity(), sample_rate=SR, backend="eager",
                                            skip_full_band=False), SR, block)
    armed.set()
    t = np.arange(int(2.0 * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 441.3 * t) + 0.05).astype(np.float32)[:, None]  # never 0
    y = np.zeros_like(x)
    outdata = np.zeros((block, 1), np.float32)
    with session:
        started = time.perf_counter()
        for k, start in enumerate(range(0, len(x) - block + 1, block)):
            wait = started + k * block / SR - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            session.callback(x[start:start + block], outdata, block, None, NO_FLAGS)
            y[start:start + block] = outdata
    assert session.error is None
    assert session.stats.late_frames > 0 or session.stats.dropped_frames > 0
    assert longest_zero_run(y[session.latency_frames:len(x) - block]) <= 4


def test_worker_priority_is_requested_on_the_worker_thread_and_reported():
    """``worker_priority``: the worker asks for SCHED_FIFO on its own thread; the note says
    what it got (granted, or why not) and the caller's thread keeps its policy."""
    import os
    import threading

    from rtbwe.live import request_realtime

    for bad in (0, 100, True, 10.0):
        with pytest.raises(ValueError, match="1-99"):
            LiveSession(Scale(latency=0), SR, 64, worker_priority=bad)
    with pytest.raises(ValueError, match="1-99"):
        request_realtime(100)
    seen = {}

    def probe():  # a throwaway thread: what the call does to the thread that makes it
        seen["note"] = request_realtime(5)
        if hasattr(os, "sched_getscheduler"):
            seen["policy"] = os.sched_getscheduler(0)
    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    if seen["note"] == "SCHED_FIFO 5":  # (the policy carries the reset-on-fork flag)
        assert seen["policy"] & ~getattr(os, "SCHED_RESET_ON_FORK", 0) == os.SCHED_FIFO
    else:
        assert "normal priority" in seen["note"]
    before = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    session = LiveSession(Scale(latency=0), SR, 64, buffer_blocks=2, worker_priority=5)
    session.start()
    try:
        for _ in range(500):
            if session.priority_note is not None:
                break
            session._stop.wait(0.002)
    finally:
        session.stop()
    assert session.priority_note == seen["note"]
    if before is not None:
        assert os.sched_getscheduler(0) == before


def test_realtime_refused_is_reported_not_raised(monkeypatch):
    import os

    from rtbwe.live import request_realtime

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    assert request_realtime(10) == ("SCHED_FIFO 10 not granted (Operation not permitted): "
                                    "normal priority")
    monkeypatch.delattr(os, "sched_setscheduler")
    assert "not available" in request_realtime(10)


def test_realtime_priority_is_not_inherited_by_child_processes():
    """SCHED_RESET_ON_FORK: a process started from the real-time thread runs at normal
    priority (a busy child at real-time priority would starve the machine)."""
    import os
    import subprocess
    import threading

    from rtbwe.live import request_realtime

    seen = {}

    def probe():
        seen["note"] = request_realtime(5)
        seen["child"] = subprocess.run(
            [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
            capture_output=True, text=True, timeout=60).stdout.strip()
    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    if seen["note"] != "SCHED_FIFO 5":
        pytest.skip(seen["note"])
    assert seen["child"] == str(os.SCHED_OTHER)
