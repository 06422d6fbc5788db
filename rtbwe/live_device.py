"""Audio devices for the live path: PortAudio through sounddevice.

:func:`run_live` opens one duplex ``sounddevice.Stream`` whose callback is
:meth:`rtbwe.live.LiveSession.callback`, prints a status line until ``duration_s`` passes or
Ctrl-C, and stops cleanly. :func:`list_devices` backs ``rtbwe devices``. Errors are
:class:`LiveAudioError` with a sentence saying what to install or pass.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from .live import LiveSession

__all__ = ["LiveAudioError", "import_sounddevice", "list_devices", "resolve_device", "open_stream",
           "run_live", "refresh_devices"]

INSTALL_PORTAUDIO = ("install PortAudio: Debian/Ubuntu `sudo apt install libportaudio2`, Fedora "
                     "`sudo dnf install portaudio`, macOS `brew install portaudio`; then "
                     "`pip install sounddevice`")


class LiveAudioError(RuntimeError):
    """No PortAudio, no such device, or the stream cannot be opened."""


def import_sounddevice() -> Any:
    """``sounddevice``, or a :class:`LiveAudioError` saying how to get PortAudio."""
    try:
        import sounddevice
    except OSError as err:  # raised when libportaudio is missing
        raise LiveAudioError(f"PortAudio library not found ({err}); {INSTALL_PORTAUDIO}") from None
    except ImportError as err:
        raise LiveAudioError(f"the sounddevice package is missing ({err}); "
                             "`pip install sounddevice`") from None
    return sounddevice


def refresh_devices() -> None:
    """Re-scan devices (PortAudio lists devices once; a JACK server started later is missed)."""
    sd = import_sounddevice()
    sd._terminate()
    sd._initialize()


def list_devices() -> str:
    """Text table of devices with host API and channel counts (``rtbwe devices``)."""
    sd = import_sounddevice()
    devices = sd.query_devices()
    if len(devices) == 0:
        return ("no audio devices found. On Linux start JACK (`jackd -d alsa`) or PipeWire/"
                "PulseAudio, or plug in a sound card; in a container, pass /dev/snd through.")
    return str(devices)


def resolve_device(device: int | str | None, kind: str) -> int | str | None:
    """Check that ``device`` (index, name substring or None for the default) exists for
    ``kind`` ``"input"``/``"output"``; raise :class:`LiveAudioError` naming what to do."""
    sd = import_sounddevice()
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as err:
        available = "no devices at all" if len(sd.query_devices()) == 0 else "see `rtbwe devices`"
        what = f"{kind} device {device!r}" if device is not None else f"default {kind} device"
        raise LiveAudioError(f"no {what} ({err}); {available}. Pass --{kind} NAME_OR_INDEX, or "
                             "start an audio server (JACK, PipeWire, PulseAudio).") from None
    if info[f"max_{kind}_channels"] < 1:
        raise LiveAudioError(f"device {info['name']!r} has no {kind} channels; pick another with "
                             f"--{kind} (see `rtbwe devices`)")
    return device


def open_stream(session: LiveSession, input_device: int | str | None = None,
                output_device: int | str | None = None) -> Any:
    """An unstarted duplex ``sounddevice.Stream`` driving ``session.callback``."""
    sd = import_sounddevice()
    devices = (resolve_device(input_device, "input"), resolve_device(output_device, "output"))
    try:
        return sd.Stream(device=devices, samplerate=session.sample_rate,
                         blocksize=session.block_frames, channels=session.channels,
                         dtype="float32", latency="low", callback=session.callback)
    except sd.PortAudioError as err:
        raise LiveAudioError(f"cannot open {devices} at {session.sample_rate} Hz, block "
                             f"{session.block_frames}: {err}. Try another --block-size, or a "
                             "device that supports this rate.") from None


def run_live(session: LiveSession, input_device: int | str | None = None,
             output_device: int | str | None = None, duration_s: float = 0.0,
             status_interval_s: float = 0.5, out: TextIO | None = None,
             on_started: Callable[[Any], None] | None = None,
             callback: str = "python") -> dict[str, Any]:
    """Run ``session`` on audio devices until ``duration_s`` (0: forever) or Ctrl-C.

    Prints a status line every ``status_interval_s`` to ``out`` (stderr by default; ``\\r``
    on a terminal). ``on_started(stream)`` runs once audio flows (tests use it to connect
    ports). ``callback``: ``"python"`` (:meth:`LiveSession.callback`), ``"c"`` (the cffi
    callback of :mod:`rtbwe.ccallback`, no GIL) or ``"auto"`` (C when it builds). Returns a
    summary dict of the counters. Raises :class:`LiveAudioError`, or the worker's exception if
    inference failed.
    """
    out = out or sys.stderr
    if callback not in ("python", "c", "auto"):
        raise ValueError(f"callback must be 'python', 'c' or 'auto', got {callback!r}")
    use_c = callback == "c"
    if callback == "auto":
        from .ccallback import available
        use_c = available()
    if use_c:
        from .ccallback import CLiveStream
        resolve_device(input_device, "input")
        resolve_device(output_device, "output")
        stream = CLiveStream(session, input_device, output_device)
    else:
        stream = open_stream(session, input_device, output_device)
    sync = getattr(stream, "sync_stats", lambda: None)
    device_latency_s = float(sum(stream.latency))
    tty = getattr(out, "isatty", lambda: False)()
    interrupted = False
    session.start()
    try:
        with stream:
            if on_started is not None:
                on_started(stream)
            started = time.monotonic()
            while duration_s <= 0 or time.monotonic() - started < duration_s:
                wait = status_interval_s if duration_s <= 0 else min(
                    status_interval_s, max(0.0, duration_s - (time.monotonic() - started)))
                time.sleep(wait)
                if session.error is not None:
                    break
                sync()
                line = session.status_line(device_latency_s)
                out.write(("\r" + line) if tty else (line + "\n"))
                out.flush()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        session.stop()
        if tty:
            out.write("\n")
    if session.error is not None:
        raise RuntimeError(f"inference failed on the worker thread: {session.error!r}") \
            from session.error
    sync()
    stats = session.snapshot()
    device_frames = int(round(device_latency_s * session.sample_rate))
    return {"interrupted": interrupted, "callback": "c" if use_c else "python",
            "latency_frames": session.latency_frames,
            "latency_ms": session.latency_ms, "device_latency_ms": 1000 * device_latency_s,
            "device_latency_frames": device_frames,
            "total_latency_frames": session.latency_frames + device_frames,
            "worker_load": session.worker_load(), "worker_priority": session.priority_note,
            **vars(stats)}
