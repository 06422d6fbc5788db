"""``rtbwe process IN OUT`` (extend a file) and ``rtbwe bench`` (the benchmark figures).

``process`` reads wav/flac/ogg/mp3 at 8-192 kHz with ``pedalboard.io.AudioFile``, resamples
to the model's rate with pedalboard's resampler (``resampled_to``), streams the audio through
:class:`~rtbwe.processor.BandwidthExtender` block by block (constant memory, a progress bar)
and writes the model's rate (48 kHz) with the same duration: the first ``latency_samples`` of
output are dropped and the stream is flushed with as many zeros, which equals the offline
``process(reset=True)`` result (tests/test_processor.py proves the equivalence).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

MIN_RATE, MAX_RATE = 8000, 192000
PROGRESS_MIN_SECONDS = 5.0     # show a progress bar for inputs longer than this
BLOCK_SECONDS = 1.0            # samples read, processed and written per step
BIT_DEPTH = {".wav": 32, ".flac": 24, ".aiff": 24, ".aif": 24}  # float wav, 24-bit flac


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


class Progress:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, total: int, enabled: bool, width: int = 30):
        self.total, self.enabled, self.width, self.shown = max(total, 1), enabled, width, -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        percent = min(100, int(100 * done / self.total))
        if percent != self.shown:
            filled = self.width * percent // 100
            sys.stderr.write(f"\r[{'#' * filled}{'-' * (self.width - filled)}] {percent:3d}%")
            sys.stderr.flush()
            self.shown = percent

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


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
    return reader


def extend_file(input_path: Path, output_path: Path, bwe, show_progress: bool | None = None
                ) -> dict[str, float]:
    """Extend ``input_path`` into ``output_path`` at ``bwe.sample_rate``; returns timings."""
    from pedalboard.io import AudioFile

    rate = bwe.sample_rate
    with open_input(input_path) as source:
        channels, source_rate = source.num_channels, source.samplerate
        reader = source.resampled_to(rate)
        total = int(round(source.frames * rate / source_rate))  # the same duration
        duration_s = total / rate
        if show_progress is None:
            show_progress = duration_s > PROGRESS_MIN_SECONDS
        progress = Progress(total, show_progress)
        block = int(BLOCK_SECONDS * rate)
        skip = bwe.latency_samples  # output before this is priming silence
        written, compute_s = 0, 0.0
        bwe.reset()
        output_path.parent.mkdir(parents=True, exist_ok=True)
        writer_kwargs = {"bit_depth": BIT_DEPTH[output_path.suffix.lower()]} \
            if output_path.suffix.lower() in BIT_DEPTH else {}
        try:
            writer = AudioFile(str(output_path), "w", rate, channels, **writer_kwargs)
        except Exception as err:
            raise CliError(f"cannot write {output_path}: {err}. Use a .wav, .flac, .ogg or "
                           ".mp3 name in a writable folder.") from None
        with writer:
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
                            total = position
                            continue
                        # the resampler's rounding: pad the last few samples with silence
                        chunk = np.zeros((channels, missing), np.float32)
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
                writer.write(keep)
                written += keep.shape[1]
                progress.update(min(position, total))
        progress.close()
    return {"duration_s": duration_s, "compute_s": compute_s, "source_rate": source_rate,
            "rt_factor": compute_s / max(duration_s, 1e-9), "samples": written,
            "channels": channels}


def run_process(args: argparse.Namespace) -> int:
    from .processor import BandwidthExtender
    from .weights import ModelLoadingError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            bwe = BandwidthExtender(args.model, device=args.device, backend=args.backend,
                                    num_threads=args.threads, window_ms=args.window_ms,
                                    hop_ms=args.hop_ms, keep_below_hz=args.keep_below_hz)
        for warning in caught:
            print(f"rtbwe process: warning: {warning.message}", file=sys.stderr)
        result = extend_file(Path(args.input), Path(args.output), bwe,
                             show_progress=False if args.quiet else None)
    except (CliError, ModelLoadingError, ValueError) as err:
        print(f"rtbwe process: error: {err}", file=sys.stderr)
        return 1
    print(f"{args.input}: {result['duration_s']:.2f} s at {result['source_rate']:g} Hz, "
          f"{result['channels']} ch -> {args.output} at {bwe.sample_rate} Hz; "
          f"compute {result['compute_s']:.2f} s, RT factor {result['rt_factor']:.3f} "
          f"({bwe.backend}, {bwe.device}, latency {bwe.latency_ms:.1f} ms)")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from . import benchmarking

    print(benchmarking.report(models=args.models, backends=args.backends,
                              threads=args.threads, block_samples=args.blocks,
                              seconds=args.seconds, window_ms=args.window_ms,
                              hop_ms=args.hop_ms))
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from .processor import DEFAULT_HOP_MS, DEFAULT_WINDOW_MS

    p.add_argument("--window-ms", type=float, default=DEFAULT_WINDOW_MS,
                   help=f"analysis window (default {DEFAULT_WINDOW_MS:.2f} = 1024 samples at 48k)")
    p.add_argument("--hop-ms", type=float, default=DEFAULT_HOP_MS,
                   help=f"hop between windows (default {DEFAULT_HOP_MS:.2f})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="extend an audio file to full band (48 kHz out)")
    p.add_argument("input", help="wav, flac, ogg or mp3, 8-192 kHz, mono or stereo")
    p.add_argument("output", help="output file (.wav/.flac/.ogg/.mp3), written at 48 kHz")
    p.add_argument("--model", default="default",
                   help="shipped name, .json/.safetensors/.ts path, or registry name")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--backend", default="auto", help="auto, eager, torchscript or cuda-graph")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--keep-below-hz", type=float, default=None,
                   help="keep the input below this frequency untouched and add only the "
                   "network's band above it (for flat-passband input: codecs, resamplers)")
    _add_model_options(p)
    p.set_defaults(func=run_process)

    b = sub.add_parser("bench", help="per-hop latency, RT factor and kernel speed on this machine")
    b.add_argument("--models", nargs="+", default=["arunet-small"],
                   help="registry names (random weights; timing only)")
    b.add_argument("--backends", nargs="+", default=["eager", "torchscript"])
    b.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    b.add_argument("--blocks", nargs="+", type=int, default=[512],
                   help="host block sizes in samples")
    b.add_argument("--seconds", type=float, default=5.0, help="audio streamed per setting")
    _add_model_options(b)
    b.set_defaults(func=run_bench)
