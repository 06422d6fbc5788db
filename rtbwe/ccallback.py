"""Optional C audio callback (cffi): copies between PortAudio and the rings without the GIL.

The Python callback of :class:`rtbwe.live.LiveSession` needs the GIL on every audio block, so
a worker thread running Python between torch ops (or the garbage collector) can delay it. This
module compiles, on first use and without network, a ~60-line C callback doing exactly what
``LiveSession.callback`` does - ring copies, fallback, counters - and opens the PortAudio
stream with it through sounddevice's own cffi handle. The rings stay the numpy arrays of
:class:`~rtbwe.ringbuffer.SampleRing` (frames-major is PortAudio's interleaved layout); only
their ``written_frames`` counters move into a C struct, stored with release/acquire atomics.

:func:`available` says whether a compiler was found; without one, :func:`rtbwe.live_device.run_live`
falls back to the Python callback. The compiled module is cached in ``~/.cache/rtbwe``
(``RTBWE_CACHE_DIR`` overrides).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .live import LiveSession
from .ringbuffer import SampleRing

__all__ = ["available", "CLiveStream"]

MODULE_NAME = "_rtbwe_ccallback_v1"

# The state shared by Python and C; one definition serves cdef and the C source.
STRUCT = """
typedef struct {
    float *in_data; float *out_data;
    uint64_t capacity; uint64_t channels;
    uint64_t in_written; uint64_t out_written;
    int64_t latency_frames; int fallback_dry;
    uint64_t callbacks, callback_frames, xruns, input_overflows, output_underflows,
             late_blocks, late_frames;
} rtbwe_live;
"""

CDEF = STRUCT + """
int rtbwe_callback(const void *input, void *output, unsigned long frames,
                   const void *time_info, unsigned long status_flags, void *user);
uint64_t rtbwe_load(uint64_t *p);
void rtbwe_store(uint64_t *p, uint64_t v);
"""

SOURCE = r"""
#include <stdint.h>
#include <string.h>
""" + STRUCT + r"""
uint64_t rtbwe_load(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void rtbwe_store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static void ring_copy_out(const float *ring, uint64_t cap, uint64_t ch, uint64_t start,
                          float *dst, uint64_t frames) {
    uint64_t row = start % cap, first = cap - row < frames ? cap - row : frames;
    memcpy(dst, ring + row * ch, first * ch * sizeof(float));
    if (frames > first) memcpy(dst + first * ch, ring, (frames - first) * ch * sizeof(float));
}

static void ring_copy_in(float *ring, uint64_t cap, uint64_t ch, uint64_t start,
                         const float *src, uint64_t frames) {
    uint64_t row = start % cap, first = cap - row < frames ? cap - row : frames;
    memcpy(ring + row * ch, src, first * ch * sizeof(float));
    if (frames > first) memcpy(ring, src + first * ch, (frames - first) * ch * sizeof(float));
}

int rtbwe_callback(const void *input, void *output, unsigned long frames,
                   const void *time_info, unsigned long status_flags, void *user) {
    rtbwe_live *s = (rtbwe_live *)user;
    uint64_t ch = s->channels, cap = s->capacity;
    float *out = (float *)output;
    if (status_flags & 0xF) {  /* input under/overflow, output under/overflow */
        s->xruns++;
        if (status_flags & 0x2) s->input_overflows++;
        if (status_flags & 0x4) s->output_underflows++;
    }
    uint64_t start = s->in_written;
    if (input) {
        ring_copy_in(s->in_data, cap, ch, start, (const float *)input, frames);
    } else {
        for (uint64_t i = 0; i < frames; i++)
            memset(s->in_data + ((start + i) % cap) * ch, 0, ch * sizeof(float));
    }
    __atomic_store_n(&s->in_written, start + frames, __ATOMIC_RELEASE);
    uint64_t published = __atomic_load_n(&s->out_written, __ATOMIC_ACQUIRE);
    uint64_t ready = published > start ? published - start : 0;
    if (ready >= frames) {
        ring_copy_out(s->out_data, cap, ch, start, out, frames);
    } else {
        if (ready) ring_copy_out(s->out_data, cap, ch, start, out, ready);
        int64_t dry = (int64_t)(start + ready) - s->latency_frames;
        if (s->fallback_dry && dry >= 0)
            ring_copy_out(s->in_data, cap, ch, (uint64_t)dry, out + ready * ch, frames - ready);
        else
            memset(out + ready * ch, 0, (frames - ready) * ch * sizeof(float));
        s->late_blocks++;
        s->late_frames += frames - ready;
    }
    s->callbacks++;
    s->callback_frames += frames;
    return 0;  /* paContinue */
}
"""


def _cache_dir() -> Path:
    return Path(os.environ.get("RTBWE_CACHE_DIR", Path.home() / ".cache" / "rtbwe"))


_module: Any = None
_error: str | None = None


def load() -> Any:
    """The compiled module (``ffi``, ``lib``), building it on first use; raises if it cannot."""
    global _module, _error
    if _module is not None:
        return _module
    if _error is not None:
        raise RuntimeError(_error)
    folder = _cache_dir()
    try:
        found = sorted(folder.glob(f"{MODULE_NAME}*.so")) if folder.exists() else []
        if not found:
            from cffi import FFI

            builder = FFI()
            builder.cdef(CDEF)
            builder.set_source(MODULE_NAME, SOURCE, extra_compile_args=["-O2"])
            folder.mkdir(parents=True, exist_ok=True)
            built = builder.compile(tmpdir=str(folder), verbose=False)
            found = [Path(built)]
        spec = importlib.util.spec_from_file_location(MODULE_NAME, found[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as err:  # no compiler, no cffi, read-only home: use the Python callback
        _error = (f"the C callback could not be built ({type(err).__name__}: {err}); install a C "
                  "compiler (Debian: `apt install gcc`) or keep the Python callback")
        raise RuntimeError(_error) from None
    sys.modules[MODULE_NAME] = module
    _module = module
    return module


def available() -> bool:
    try:
        load()
        return True
    except RuntimeError:
        return False


class _CCounterRing(SampleRing):
    """A SampleRing whose ``written_frames`` lives in the C struct (atomic load/store)."""

    def __init__(self, ring: SampleRing, lib: Any, field_ptr: Any) -> None:
        self.__dict__.update(ring.__dict__)
        self.__dict__.pop("written_frames", None)
        self._lib, self._ptr = lib, field_ptr

    @property
    def written_frames(self) -> int:  # type: ignore[override]
        return int(self._lib.rtbwe_load(self._ptr))

    @written_frames.setter
    def written_frames(self, value: int) -> None:
        self._lib.rtbwe_store(self._ptr, int(value))


class CLiveStream:
    """A PortAudio stream whose callback is C, around a :class:`LiveSession` (not started).

    Use like ``sounddevice.Stream``: ``with CLiveStream(session, in_dev, out_dev): ...``;
    ``latency`` is ``(input_s, output_s)``. The session's counters are read back from C by
    :meth:`sync_stats` (``run_live`` calls it before each status line).
    """

    COUNTERS = ("callbacks", "callback_frames", "xruns", "input_overflows", "output_underflows",
                "late_blocks", "late_frames")

    def __init__(self, session: LiveSession, input_device: Any, output_device: Any) -> None:
        from .live_device import LiveAudioError, import_sounddevice

        module = load()
        self.ffi, self.lib = module.ffi, module.lib
        self.session = session
        self.sd = sd = import_sounddevice()
        state = self.ffi.new("rtbwe_live *")
        state.in_data = self.ffi.cast("float *", self.ffi.from_buffer(session.input_ring.data))
        state.out_data = self.ffi.cast("float *", self.ffi.from_buffer(session.output_ring.data))
        state.capacity = session.input_ring.capacity_frames
        state.channels = session.channels
        state.latency_frames = session.latency_frames
        state.fallback_dry = int(session.fallback == "dry")
        state.in_written = session.input_ring.written_frames
        state.out_written = session.output_ring.written_frames
        self.state = state
        session.input_ring = _CCounterRing(session.input_ring, self.lib,
                                           self.ffi.addressof(state, "in_written"))
        session.output_ring = _CCounterRing(session.output_ring, self.lib,
                                            self.ffi.addressof(state, "out_written"))
        sffi, slib = sd._ffi, sd._lib
        params = []
        for device, kind in ((input_device, "input"), (output_device, "output")):
            info = sd.query_devices(device, kind)
            params.append(sffi.new("PaStreamParameters *", {
                "device": info["index"], "channelCount": session.channels,
                "sampleFormat": slib.paFloat32,
                "suggestedLatency": info[f"default_low_{kind}_latency"],
                "hostApiSpecificStreamInfo": sffi.NULL}))
        self._params = params
        callback = sffi.cast("PaStreamCallback *",
                             int(self.ffi.cast("uintptr_t", self.lib.rtbwe_callback)))
        user = sffi.cast("void *", int(self.ffi.cast("uintptr_t", state)))
        self._stream_pp = sffi.new("PaStream **")
        err = slib.Pa_OpenStream(self._stream_pp, params[0], params[1], session.sample_rate,
                                 session.block_frames, slib.paNoFlag, callback, user)
        if err != 0:
            text = sffi.string(slib.Pa_GetErrorText(err)).decode()
            raise LiveAudioError(f"cannot open the C-callback stream: {text}")
        self._stream = self._stream_pp[0]
        info = slib.Pa_GetStreamInfo(self._stream)
        self.latency = (float(info.inputLatency), float(info.outputLatency))

    def sync_stats(self) -> None:
        for name in self.COUNTERS:
            setattr(self.session.stats, name, int(getattr(self.state, name)))

    def __enter__(self) -> "CLiveStream":
        self.sd._lib.Pa_StartStream(self._stream)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sd._lib.Pa_StopStream(self._stream)
        self.sd._lib.Pa_CloseStream(self._stream)
        self.sync_stats()
