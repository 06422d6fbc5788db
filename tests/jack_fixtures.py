"""A real JACK server for live-audio tests and benchmarks, and a signal loop through it.

``jack_server`` (pytest fixture, one server per test: two must not overlap) starts
``jackd -S --no-realtime -d dummy -r 48000 -p 256`` under a private server name
(``jack_server_generous``: ``-p 1024``), waits for ``jack_wait -w``, points PortAudio and
JACK-Client at it (``JACK_DEFAULT_SERVER``), and stops it by pid. It skips, saying what to
install, where ``jackd`` or JACK-Client is missing.

:class:`JackLoop` is two JACK clients in the test process: ``src`` plays a signal into rtbwe's
input port and ``sink`` records rtbwe's output port, both indexed by the JACK frame time of
the cycle, so the delay between them is exact. Two clients, not one: a client both feeding
and reading rtbwe would form a feedback loop that JACK breaks with an extra period.

Import the fixture into a test module with ``from jack_fixtures import jack_server``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pytest

SAMPLE_RATE = 48000
PERIOD_FRAMES = 256
START_TIMEOUT_S = 15
# -S (synchronous server): the dummy driver waits for the graph instead of skipping cycles.
# Without it, on a loaded 2-core machine a non-realtime Python client that is a few ms late makes
# jackd drop whole periods (measured: ~2000 corrupt samples about 1 s into every 6 s run).
JACKD_FLAGS = os.environ.get("RTBWE_JACKD_FLAGS", "-S --no-realtime").split()
GENEROUS_PERIOD_FRAMES = 1024  # for the 5 s zero-xrun test on a loaded machine


@dataclass
class JackServer:
    name: str
    period_frames: int
    sample_rate: int
    process: subprocess.Popen
    log_path: str


def jack_missing_reason() -> str | None:
    """Why JACK tests cannot run here, or None."""
    for tool in ("jackd", "jack_wait"):
        if shutil.which(tool) is None:
            return f"{tool} not found: install Debian's jackd2 (`apt install jackd2`) to run the " \
                   "live-audio tests through a real JACK server"
    try:
        import jack  # noqa: F401
    except (ImportError, OSError) as err:
        return f"JACK-Client unusable ({err}): `pip install JACK-Client` (and libjack)"
    return None


def start_jack(period_frames: int = PERIOD_FRAMES, sample_rate: int = SAMPLE_RATE) -> JackServer:
    """Start a private dummy-driver jackd; sets JACK_DEFAULT_SERVER; raise if it won't start."""
    name = f"rtbwe-test-{os.getpid()}-{period_frames}"
    log = tempfile.NamedTemporaryFile("w", prefix="jackd-", suffix=".log", delete=False)
    proc = subprocess.Popen(["jackd", "-n", name, *JACKD_FLAGS, "-d", "dummy",
                             "-r", str(sample_rate), "-p", str(period_frames)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ready = subprocess.run(["jack_wait", "-s", name, "-w", "-t", str(START_TIMEOUT_S)],
                           capture_output=True, text=True)
    if ready.returncode != 0 or proc.poll() is not None:
        stop_jack(JackServer(name, period_frames, sample_rate, proc, log.name))
        with open(log.name) as f:
            raise RuntimeError(f"jackd did not start: {ready.stdout}{ready.stderr}\n{f.read()}")
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    _refresh_portaudio()
    return JackServer(name, period_frames, sample_rate, proc, log.name)


def stop_jack(server: JackServer) -> None:
    """Stop jackd by its pid and forget it in PortAudio."""
    _terminate_portaudio()  # before the server goes: PortAudio's JACK host asserts otherwise
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if os.environ.get("JACK_DEFAULT_SERVER") == server.name:
        del os.environ["JACK_DEFAULT_SERVER"]
    _initialize_portaudio()


def _terminate_portaudio() -> None:
    try:
        import sounddevice as sd
        sd._terminate()
    except Exception:  # PortAudio missing: the tests that need it skip on their own
        pass


def _initialize_portaudio() -> None:
    try:
        import sounddevice as sd
        sd._initialize()
    except Exception:
        pass


def _refresh_portaudio() -> None:
    """PortAudio lists devices once, at initialisation: re-list them for the new server."""
    _terminate_portaudio()
    _initialize_portaudio()


def _serve(period_frames: int):
    reason = jack_missing_reason()
    if reason:
        pytest.skip(reason)
    server = start_jack(period_frames)
    try:
        yield server
    finally:
        stop_jack(server)


@pytest.fixture
def jack_server():
    yield from _serve(PERIOD_FRAMES)


@pytest.fixture
def jack_server_generous():
    yield from _serve(GENEROUS_PERIOD_FRAMES)


class JackLoop:
    """Play ``signal`` (n,) float32 into a port and record another port, by JACK frame time.

    ``connect(send_to, receive_from)`` wires ``src:out -> send_to`` and ``receive_from ->
    sink:in`` and arms playback at the next cycle. ``recorded`` (n + extra,) holds what
    arrived ``k`` frames after playback began at index ``k``. ``server_xruns`` counts JACK
    xrun callbacks.
    """

    def __init__(self, signal: np.ndarray, extra_frames: int, server_name: str) -> None:
        import jack

        self.signal = np.ascontiguousarray(signal, dtype=np.float32)
        self.recorded = np.zeros(self.signal.size + extra_frames, np.float32)
        self.recorded_frames = 0
        self.server_xruns = 0
        self.xrun_frames: list[int] = []
        self.start_frame: int | None = None
        self._armed = False
        self.src = jack.Client("rtbwe-src", no_start_server=True, servername=server_name)
        self.sink = jack.Client("rtbwe-sink", no_start_server=True, servername=server_name)
        self.out_port = self.src.outports.register("out")
        self.in_port = self.sink.inports.register("in")
        self.src.set_process_callback(self._play)
        self.sink.set_process_callback(self._record)
        self.src.set_xrun_callback(self._xrun)
        self.src.activate()
        self.sink.activate()

    def _xrun(self, delay_usecs: float) -> None:
        self.server_xruns += 1
        if len(self.xrun_frames) < 1000:
            self.xrun_frames.append(self.src.frame_time)

    def _play(self, frames: int) -> None:
        buf = self.out_port.get_array()
        if self._armed and self.start_frame is None:
            self.start_frame = self.src.last_frame_time
        if self.start_frame is None:
            buf.fill(0.0)
            return
        pos = self.src.last_frame_time - self.start_frame
        chunk = self.signal[pos:pos + frames] if 0 <= pos < self.signal.size else self.signal[:0]
        buf[:chunk.size] = chunk
        buf[chunk.size:] = 0.0

    def _record(self, frames: int) -> None:
        if self.start_frame is None:
            return
        pos = self.sink.last_frame_time - self.start_frame
        if 0 <= pos < self.recorded.size:
            n = min(frames, self.recorded.size - pos)
            self.recorded[pos:pos + n] = self.in_port.get_array()[:n]
            self.recorded_frames = pos + n

    def xruns_while_recording(self) -> int:
        """Server xruns between the start of playback and the end of the recording (xruns
        while clients come and go outside that window do not touch the audio compared)."""
        if self.start_frame is None:
            return 0
        end = self.start_frame + self.recorded.size
        return sum(1 for frame in self.xrun_frames if self.start_frame <= frame <= end)

    def connect(self, send_to: str, receive_from: str) -> None:
        for source in self.src.get_all_connections(send_to):
            self.src.disconnect(source, send_to)  # e.g. system:capture_1 -> rtbwe input
        self.src.connect(self.out_port, send_to)
        self.sink.connect(receive_from, self.in_port)
        self._armed = True

    def wait_done(self, timeout_s: float) -> bool:
        """True once ``recorded`` is full (polls; the JACK threads do the work)."""
        deadline = time.monotonic() + timeout_s
        while self.recorded_frames < self.recorded.size and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.recorded_frames >= self.recorded.size

    def close(self) -> None:
        for client in (self.src, self.sink):
            client.deactivate()
            client.close()


def control_xruns(server_name: str, seconds: float, block_frames: int | None = None) -> int:
    """Xruns while the same test clients run with no rtbwe in the graph: what the machine's
    load and the test's own Python JACK clients cost right now.

    With ``block_frames`` the :class:`JackLoop` plays ``seconds`` through a bare PortAudio
    duplex stream whose Python callback copies input to output at that block size: rtbwe's
    live path without its worker, session or model. Returns its JACK xruns plus the
    PortAudio status flags its callback saw. (Measured on the 2-core VM at load 2, 5 runs each
    interleaved: this passthrough was spoilt in 4 of 5 runs, as rtbwe's identity model was,
    while the loop alone, without PortAudio, counted no xruns; so a control without PortAudio
    blamed rtbwe for the harness's own xruns.) Without ``block_frames`` (or sounddevice) the
    loop plays straight into its own sink."""
    sd = None
    if block_frames is not None:
        try:
            import sounddevice as sd
        except (ImportError, OSError):
            sd = None
    loop = JackLoop(np.zeros(int(seconds * SAMPLE_RATE), np.float32), 0, server_name)
    flags = []

    def passthrough(indata, outdata, frames, time_info, status):
        if status:
            flags.append(status)
        outdata[:] = indata

    try:
        if sd is None:
            loop.src.connect(loop.out_port, loop.in_port)
            loop._armed = True
            loop.wait_done(seconds + 5.0)
            return loop.xruns_while_recording()
        with sd.Stream(device=("system", "system"), samplerate=SAMPLE_RATE,
                       blocksize=block_frames, channels=1, dtype="float32", latency="low",
                       callback=passthrough):
            loop.connect(*portaudio_ports(server_name))
            loop.wait_done(seconds + 5.0)
        return loop.xruns_while_recording() + len(flags)
    finally:
        loop.close()


class OtherWork:
    """CPU time that processes other than this one and jackd used while it was open, in cores
    (``/proc/stat`` busy time minus ours and jackd's, over the wall time): 0 on a quiet
    machine, about 2 with two busy loops. None where ``/proc`` is missing."""

    def __init__(self, jackd_pid: int) -> None:
        self.jackd_pid = jackd_pid
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            fields = open("/proc/stat").readline().split()[1:]
            busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # no idle
            jackd = open(f"/proc/{self.jackd_pid}/stat").read().rsplit(")", 1)[1].split()
            jackd_ticks = int(jackd[11]) + int(jackd[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        mine = os.times()
        return (time.perf_counter(), (busy - jackd_ticks) / tick, mine.user + mine.system)

    def cores(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        return max(0.0, (end[1] - self.start[1]) - (end[2] - self.start[2])) / max(wall, 1e-9)


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def portaudio_ports(server_name: str) -> tuple[str, str]:
    """Names of the PortAudio client's first input and output ports on the JACK server."""
    import jack

    with jack.Client("rtbwe-probe", no_start_server=True, servername=server_name) as probe:
        ins = probe.get_ports("PortAudio", is_audio=True, is_input=True)
        outs = probe.get_ports("PortAudio", is_audio=True, is_output=True)
        if not ins or not outs:
            raise RuntimeError("no PortAudio ports on the JACK server: did the stream open?")
        return ins[0].name, outs[0].name


def measured_delay(recorded: np.ndarray, signal: np.ndarray, max_delay: int) -> int:
    """Delay of ``signal`` inside ``recorded`` by cross-correlation over ``[0, max_delay]``."""
    from scipy.signal import correlate

    probe = signal[:min(signal.size, 48000)]
    cc = correlate(recorded[:max_delay + probe.size], probe, mode="valid", method="fft")
    return int(np.argmax(cc))
