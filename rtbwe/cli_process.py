"""``rtbwe process IN [IN ...] OUT`` (extend files) and ``rtbwe bench`` (the benchmark figures).

Which paths are read and written, and how existing files stay safe, is :mod:`rtbwe.cli_files`.
``process`` reads wav/flac/ogg/mp3 at 8-192 kHz with ``pedalboard.io.AudioFile``, resamples
to the model's rate with pedalboard's resampler (``resampled_to``), streams the audio through
:class:`~rtbwe.processor.BandwidthExtender` block by block (constant memory, one tqdm bar over all files)
and writes the model's rate (48 kHz) with the same duration: the first ``latency_samples`` of
output are dropped and the stream is flushed with as many zeros, which equals the offline
``process(reset=True)`` result (tests/test_processor.py proves the equivalence).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .cli_files import (DEFAULT_SUBTYPE, SUBTYPE_BITS, CliError, Job, atomic_output,
                        plan_jobs, verify_input)

__all__ = ["CliError", "extend_file", "open_input", "run_process", "register"]

MIN_RATE, MAX_RATE = 8000, 192000
PROGRESS_MIN_SECONDS = 5.0     # show a progress bar when the audio to process is longer
BLOCK_SECONDS = 1.0            # samples read, processed and written per step
DEFAULT_THREADS = 1            # torch intra-op threads: robust under load (benchmarks/README.md)


def open_input(path: Path):
    """Open ``path`` with pedalboard, with errors that say what went wrong."""
    from pedalboard.io import AudioFile

    if not path.exists():
        raise CliError(f"input file not found: {path}")
    if path.is_dir():
        raise CliError(f"input is a directory, not an audio file: {path}")
    try:
        reader = AudioFile(str(path))
    except Exception as err:  # pedalboard raises ValueError/RuntimeError by codec
        raise CliError(f"cannot read {path}: {err}. Pass a wav, flac, ogg or mp3 file.") from None
    if not MIN_RATE <= reader.samplerate <= MAX_RATE:
        reader.close()
        raise CliError(f"{path} is sampled at {reader.samplerate:g} Hz; rtbwe reads "
                       f"{MIN_RATE}-{MAX_RATE} Hz. Resample it first (e.g. with sox).")
    if reader.frames == 0:
        reader.close()
        raise CliError(f"{path} holds no audio (0 frames); nothing to extend")
    return reader


def input_seconds(path: Path) -> float:
    """Duration the header of ``path`` announces (0 when it cannot be read: that file's own
    error comes when it is processed)."""
    try:
        with open_input(path) as reader:
            return reader.frames / reader.samplerate
    except CliError:
        return 0.0


def open_writer(temporary: Path, output_path: Path, rate: int, channels: int,
                subtype: str | None):
    from pedalboard.io import AudioFile

    subtype = subtype or DEFAULT_SUBTYPE.get(output_path.suffix.lower())
    kwargs = {"bit_depth": SUBTYPE_BITS[subtype]} if subtype else {}
    try:
        return AudioFile(str(temporary), "w", rate, channels, **kwargs)
    except Exception as err:
        raise CliError(f"cannot write {output_path}: {err}") from None


def extend_file(input_path: Path, output_path: Path, bwe, progress=None,
                subtype: str | None = None, overwrite: bool = False,
                limit_db: float | None = None) -> dict[str, float]:
    """Extend ``input_path`` into ``output_path`` at ``bwe.sample_rate``; returns timings.

    ``output_path`` appears only when the whole file succeeded (:func:`atomic_output`);
    ``progress.update(seconds)`` (a tqdm bar, or None) advances by the input audio read.
    ``subtype`` is PCM_16, PCM_24 or FLOAT (default: FLOAT for wav, PCM_24 for flac/aiff).
    ``limit_db``: run :class:`rtbwe.level.PeakLimiter` at this dBFS on the output (None: no).
    Result keys: duration_s, compute_s, source_rate, rt_factor, samples, channels, peak,
    clipped_samples (above full scale, :mod:`rtbwe.level`), limited_frames.
    """
    from .level import ClipCounter, PeakLimiter

    rate = bwe.sample_rate
    with open_input(input_path) as source:
        channels, source_rate = source.num_channels, source.samplerate
        verify_input(input_path, source.frames, source_rate)
        reader = source.resampled_to(rate)
        total = int(round(source.frames * rate / source_rate))  # the same duration
        duration_s = total / rate
        block = int(BLOCK_SECONDS * rate)
        skip = bwe.latency_samples  # output before this is priming silence
        written, compute_s, peak = 0, 0.0, 0.0
        clips = ClipCounter()
        limiter = PeakLimiter(rate, limit_db) if limit_db is not None else None
        bwe.reset()
        with atomic_output(output_path, overwrite) as temporary, \
                open_writer(temporary, output_path, rate, channels, subtype) as writer:
            position = 0
            while position < total + bwe.latency_samples:
                if position < total:
                    try:
                        chunk = reader.read(min(block, total - position))
                    except Exception as err:
                        raise CliError(f"{input_path} is corrupt or truncated near "
                                       f"{position / rate:.2f} s: {err}") from None
                    if chunk.shape[1] == 0:
                        missing = total - position
                        if missing > rate // 100:  # the decoder found less than announced
                            raise CliError(f"{input_path} ends at {position / rate:.2f} s, "
                                           f"before the {duration_s:.2f} s its header "
                                           "announces")
                        # the resampler's rounding: pad the last few samples with silence
                        chunk = np.zeros((channels, missing), np.float32)
                    if progress is not None:
                        progress.update(chunk.shape[1] / rate)
                else:  # flush the latency with zeros
                    chunk = np.zeros((channels, total + bwe.latency_samples - position),
                                     np.float32)
                started = time.perf_counter()
                out = bwe.process(chunk, rate, reset=False)
                compute_s += time.perf_counter() - started
                position += chunk.shape[1]
                drop = min(skip, out.shape[1])
                skip -= drop
                keep = out[:, drop:][:, :max(0, total - written)]
                if limiter is not None:
                    keep = limiter.process(keep)
                clips.update(keep)
                if keep.size:
                    peak = max(peak, float(np.abs(keep).max()))
                writer.write(keep)
                written += keep.shape[1]
    return {"duration_s": duration_s, "compute_s": compute_s, "source_rate": source_rate,
            "rt_factor": compute_s / duration_s, "samples": written, "channels": channels,
            "peak": peak, "clipped_samples": clips.clipped_samples,
            "total_samples": clips.total_samples,
            "limited_frames": limiter.limited_frames if limiter else 0}


def output_warnings(result: dict[str, float], output_path: Path) -> list[str]:
    """Hook for checks on a finished output (issue 13: clipping); lines to print as warnings.

    ``result`` is :func:`extend_file`'s, with ``peak`` the largest absolute output sample.
    """
    from .level import clip_warning

    line = clip_warning(result.get("clipped_samples", 0), result.get("total_samples", 0),
                        result.get("peak", 0.0))
    return [line] if line else []


def summary_line(job: Job, result: dict[str, float], bwe) -> str:
    line = (f"{job.input_path}: {result['duration_s']:.2f} s at {result['source_rate']:g} Hz, "
            f"{result['channels']} ch -> {job.output_path} at {bwe.sample_rate} Hz; compute "
            f"{result['compute_s']:.2f} s, RT factor {result['rt_factor']:.3f} ({bwe.backend}, "
            f"{bwe.device}, {bwe.engine.num_threads or 'torch default'} thread(s), latency "
            f"{bwe.latency_ms:.1f} ms)")
    return line + bandwidth_note(bwe)


def bandwidth_note(bwe) -> str:
    """``; input band-limited at about X.X kHz`` once ``bwe`` has estimated it (issue 11's
    ``input_bandwidth_hz``; absent or None before), else ''. Also on `rtbwe live`'s status."""
    from .bandwidth import FULL_BAND_FRACTION

    bandwidth_hz = getattr(bwe, "input_bandwidth_hz", None)
    if bandwidth_hz is None:
        return ""
    sample_rate = getattr(bwe, "sample_rate", 48000)
    if bandwidth_hz >= FULL_BAND_FRACTION * sample_rate / 2:
        return "; input is full band: passed through unchanged"
    note = f"; input band-limited at about {bandwidth_hz / 1000:.1f} kHz"
    gain = getattr(bwe, "extension_gain", None)
    if gain is not None and getattr(bwe, "passband", "detected") == "detected":
        from .passband import extend_below_hz

        limit_hz = extend_below_hz(gain, sample_rate)
        if bandwidth_hz >= limit_hz:  # the card's gain table adds nothing up there
            note += f" (nothing is added above {limit_hz / 1000:.0f} kHz: passed through)"
    boost_hz = getattr(getattr(bwe, "stats", None), "skirt_boost_hz", None)
    if boost_hz is not None:
        note += f"; its gentle roll-off boosted back up to {boost_hz / 1000:.1f} kHz"
    return note


@contextmanager
def sigterm_as_interrupt():
    """Make SIGTERM unwind like Ctrl-C, so the temporary output is removed (main thread only)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_extender(args: argparse.Namespace):
    from .processor import BandwidthExtender

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        bwe = BandwidthExtender(args.model, device=args.device, backend=args.backend,
                                num_threads=args.threads or DEFAULT_THREADS,
                                keep_below_hz=args.keep_below_hz, **model_options(args))
    for warning in caught:
        print(f"rtbwe process: warning: {warning.message}", file=sys.stderr)
    return bwe


def run_process(args: argparse.Namespace) -> int:
    """Check every path, load the model once, extend each file; a failed file does not stop
    the others (exit status 1 if any failed)."""
    from tqdm import tqdm

    from .weights import ModelLoadingError

    *inputs, output = args.paths
    if not inputs:
        print("rtbwe process: error: give an input and an output: rtbwe process IN [IN ...] OUT",
              file=sys.stderr)
        return 2
    try:
        jobs, skipped = plan_jobs(inputs, output, args.overwrite, args.skip_existing,
                                  args.subtype)
        for job in skipped:
            print(f"{job.output_path} exists: skipped ({job.input_path})")
        if not jobs:
            return 0
        if getattr(args, "ray", None):  # the same jobs on a Ray cluster: rtbwe.batch
            from .batch import run_ray
            return run_ray(jobs, args)
        bwe = load_extender(args)
    except (CliError, ModelLoadingError, ValueError) as err:
        print(f"rtbwe process: error: {err}", file=sys.stderr)
        return 1
    total_s = sum(input_seconds(job.input_path) for job in jobs)
    show = not args.quiet and sys.stderr.isatty() and total_s > PROGRESS_MIN_SECONDS
    failed = []
    with sigterm_as_interrupt(), tqdm(total=round(total_s, 2), unit="s", disable=not show,
                                      file=sys.stderr, dynamic_ncols=True,
                                      bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio "
                                      "[{elapsed}<{remaining}]") as bar:
        for job in jobs:
            bar.set_description(job.input_path.name if len(jobs) > 1 else "")
            try:
                result = extend_file(job.input_path, job.output_path, bwe, bar, args.subtype,
                                     args.overwrite, args.limit)
            except (CliError, ValueError) as err:
                bar.write(f"rtbwe process: error: {err}", file=sys.stderr)
                failed.append(job.input_path)
                continue
            bar.write(summary_line(job, result, bwe), file=sys.stdout)
            for line in output_warnings(result, job.output_path):
                bar.write(f"rtbwe process: warning: {line}", file=sys.stderr)
    if len(jobs) > 1:
        print(f"{len(jobs) - len(failed)} of {len(jobs)} files written"
              + (f"; failed: {', '.join(str(p) for p in failed)}" if failed else ""))
    return 1 if failed else 0


def run_bench(args: argparse.Namespace) -> int:
    from . import benchmarking

    print(benchmarking.report(models=args.models, backends=args.backends,
                              threads=args.threads, block_samples=args.blocks,
                              seconds=args.seconds, paced=args.paced,
                              **model_options(args)))
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    # defaults are None (= the processor's), so that `rtbwe --help` need not import torch
    p.add_argument("--window-ms", type=float, default=None,
                   help="analysis window in ms (default 21.33 = 1024 samples at 48 kHz)")
    p.add_argument("--hop-ms", type=float, default=None,
                   help="hop between windows in ms (default 16.0 = 768 samples at 48 kHz)")
    p.add_argument("--low-latency", action="store_true", help=LOW_LATENCY_HELP)


LOW_LATENCY_HELP = ("window 9.33 ms / hop 4.67 ms (448 / 224 samples at 48 kHz): 9.3 ms "
                    "algorithmic latency instead of 21.3, for about 1.5x the compute; "
                    "--window-ms/--hop-ms still win")


NO_SKIRT_BOOST_HELP = ("do not boost a gentle filter's attenuated band above the detected "
                       "bandwidth back up (rtbwe/skirt.py; on in the default model's card)")


def model_options(args: argparse.Namespace) -> dict[str, float | bool]:
    """The ``--window-ms`` / ``--hop-ms`` given (``--low-latency``: its geometry where they are
    not) and ``--no-skirt-boost``, as ``BandwidthExtender`` keyword arguments."""
    options = {}
    if getattr(args, "low_latency", False):
        from .processor import LOW_LATENCY_HOP_MS, LOW_LATENCY_WINDOW_MS

        options = {"window_ms": LOW_LATENCY_WINDOW_MS, "hop_ms": LOW_LATENCY_HOP_MS}
    options.update({name: getattr(args, name) for name in ("window_ms", "hop_ms")
                    if getattr(args, name, None) is not None})
    if getattr(args, "no_skirt_boost", False):
        options["skirt_boost"] = False
    return options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process", help="extend audio files to full band (48 kHz out)",
        usage="rtbwe process [options] INPUT [INPUT ...] OUTPUT",
        description="Extend INPUT to OUTPUT, or several inputs (files or folders) into an "
        "OUTPUT folder as <name>.wav. The model loads once. Nothing is written over an input "
        "or, without -y, over an existing file; an output appears only when complete. The "
        "output folder must exist.")
    p.add_argument("paths", nargs="+", metavar="INPUT ... OUTPUT",
                   help="inputs: wav, flac, aiff, ogg or mp3 at 8-192 kHz, any channel count the "
                   "model takes, or folders of them (not recursive); the last path is the output "
                   "file (.wav/.flac/.aiff/.ogg/.mp3) or, for several inputs, an existing folder")
    p.add_argument("-y", "--overwrite", action="store_true",
                   help="replace outputs that exist (default: refuse and write nothing)")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output exists (to resume a batch)")
    p.add_argument("--limit", nargs="?", type=float, const=-1.0, default=None,
                   metavar="DBFS", help="limit output peaks to DBFS (default -1) with a "
                   "zero-latency peak limiter; without it, samples above full scale are "
                   "written as computed and counted in a warning (see rtbwe.level)")
    p.add_argument("--subtype", choices=tuple(SUBTYPE_BITS), default=None,
                   help="output sample format (default: FLOAT for .wav, PCM_24 for .flac/.aiff; "
                   "not for .ogg/.mp3)")
    p.add_argument("--model", default="default",
                   help="shipped name (see `rtbwe models`), .json/.safetensors/.ts path, or "
                   "registry name (random weights; for testing)")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    p.add_argument("--backend", default="auto", help="auto (cuda-graph on CUDA, else onnx when "
                   "installed, else eager), eager, torchscript, onnx or cuda-graph")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch intra-op CPU threads (default {DEFAULT_THREADS}: more threads "
                   "collapse when other work shares the cores; see benchmarks/README.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="extend the files on a Ray cluster: auto, host:port, ray://host:port, "
                   "or local (a Ray instance on this machine); one model per worker, same "
                   "rules and output (pip install 'rtbwe[cluster]'; see rtbwe/batch.py)")
    p.add_argument("--keep-below-hz", type=float, default=None,
                   help="keep the input below this frequency untouched and add only the "
                   "network's band above it (for flat-passband input: codecs, resamplers)")
    p.add_argument("--no-skirt-boost", action="store_true", help=NO_SKIRT_BOOST_HELP)
    _add_model_options(p)
    p.set_defaults(func=run_process)

    b = sub.add_parser("bench", help="per-hop latency, RT factor and kernel speed on this machine",
                       description="Times the network on every window, as for band-limited "
                       "input (a full-band input skips it and costs far less).")
    b.add_argument("--models", nargs="+", default=["default"],
                   help="shipped names (real weights and conditioning) or registry names "
                   "(random weights; timing only). Default: the shipped default model")
    b.add_argument("--backends", nargs="+", default=None,
                   help="inference backends to time: eager, torchscript, onnx, cuda-graph "
                   "(default: every CPU backend installed: eager torchscript, and onnx with "
                   "rtbwe[fast])")
    b.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                   help="torch intra-op thread counts to time (default: 1 2)")
    b.add_argument("--blocks", nargs="+", type=int, default=[512],
                   help="host block sizes in samples (default 512)")
    b.add_argument("--seconds", type=float, default=5.0, help="audio streamed per setting")
    b.add_argument("--paced", action="store_true",
                   help="call process() when each block's audio would have arrived, sleeping "
                   "in between, as a live stream does, instead of flat out (on a small VM the "
                   "paced calls cost more)")
    _add_model_options(b)
    b.set_defaults(func=run_bench)
