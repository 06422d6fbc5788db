"""``rtbwe live`` (microphone to speakers) and ``rtbwe devices``."""
from __future__ import annotations

import argparse
import sys


DEFAULT_THREADS = 1  # torch intra-op threads: 2 on a 2-core machine under load plays dry blocks


def build_processor(model: str, device: str, sample_rate: int | None = None,
                    keep_below_hz: float | None = None, num_threads: int | None = None,
                    low_latency: bool = False, skirt_boost: bool | None = None):
    """``BandwidthExtender`` for ``--model``; ``identity`` runs the audio path with no network.
    ``num_threads`` None means :data:`DEFAULT_THREADS`; ``low_latency``: the 9.3 ms geometry;
    ``skirt_boost`` None: the card's."""
    import torch

    from . import processor

    module = torch.nn.Identity() if model == "identity" else model
    geometry = {"window_ms": processor.LOW_LATENCY_WINDOW_MS,
                "hop_ms": processor.LOW_LATENCY_HOP_MS} if low_latency else {}
    return processor.BandwidthExtender(module, sample_rate=sample_rate, device=device,
                                       keep_below_hz=keep_below_hz, skirt_boost=skirt_boost,
                                       num_threads=num_threads or DEFAULT_THREADS, **geometry)


def live(args: argparse.Namespace) -> int:
    from .cli_process import bandwidth_note
    from .live import LiveSession
    from .live_device import LiveAudioError, resolve_device, run_live
    from .weights import ModelLoadingError

    try:  # devices first: a missing one should not wait for a model to load
        resolve_device(args.input, "input")
        resolve_device(args.output, "output")
    except LiveAudioError as err:
        print(f"rtbwe live: {err}", file=sys.stderr)
        return 2
    try:
        processor = build_processor(args.model, args.device, args.sample_rate,
                                    args.keep_below_hz, args.threads, args.low_latency,
                                    False if args.no_skirt_boost else None)
    except (ModelLoadingError, ValueError) as err:
        print(f"rtbwe live: {err}\n(`--model identity` checks the audio path without a model)",
              file=sys.stderr)
        return 2
    try:
        session = LiveSession(processor, processor.sample_rate, args.block_size,
                              channels=args.channels, buffer_blocks=args.buffer_blocks,
                              fallback=args.fallback,
                              worker_priority=args.realtime_priority)
    except ValueError as err:  # --block-size/--channels/--buffer-blocks 0, --realtime-priority
        print(f"rtbwe live: {err}", file=sys.stderr)
        return 2
    print(f"rtbwe live: {processor!r}, {processor.engine.num_threads} thread(s)\n"
          f"block {args.block_size} frames, {session.buffer_blocks} blocks queued: "
          f"{session.latency_ms:.1f} ms before the device's own latency. Ctrl-C stops.",
          file=sys.stderr)
    try:
        summary = run_live(session, args.input, args.output, args.duration,
                           callback=args.callback)
    except LiveAudioError as err:
        print(f"rtbwe live: {err}", file=sys.stderr)
        return 2
    print(f"stopped{' (Ctrl-C)' if summary['interrupted'] else ''}: {summary['callbacks']} "
          f"callbacks, xruns {summary['xruns']}, late {summary['late_blocks']} blocks, dropped "
          f"{summary['dropped_frames']} frames, worker load {summary['worker_load']:.0%}"
          + (f", worker {summary['worker_priority']}" if summary["worker_priority"] else "")
          + bandwidth_note(processor), file=sys.stderr)
    return 130 if summary["interrupted"] else 0  # 130: the shell's code for Ctrl-C


def devices(args: argparse.Namespace) -> int:
    from .live_device import LiveAudioError, list_devices

    try:
        print(list_devices())
    except LiveAudioError as err:
        print(f"rtbwe devices: {err}", file=sys.stderr)
        return 2
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from .cli_process import NO_SKIRT_BOOST_HELP

    p = sub.add_parser("live", help="live bandwidth extension, microphone to speakers")
    p.add_argument("--input", default=None, help="input device: index or name substring "
                   "(default: the system default; see `rtbwe devices`)")
    p.add_argument("--output", default=None, help="output device: index or name substring")
    p.add_argument("--block-size", type=int, default=256, help="frames per audio callback "
                   "(default 256; 64-512 typical)")
    p.add_argument("--model", default="default", help="model name or weights path; "
                   "'identity' tests the audio path without a network")
    p.add_argument("--device", default="auto", help="inference device: auto, cpu, cuda")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    p.add_argument("--channels", type=int, default=1, help="channels in and out (default 1)")
    p.add_argument("--buffer-blocks", type=int, default=None, help="blocks queued between the "
                   "worker and the speakers (default: one model hop, 10 ms, and at least 2); more "
                   "survives a slower CPU, at one block of latency each")
    p.add_argument("--fallback", choices=("dry", "silence"), default="dry",
                   help="what plays when inference is late (default: the dry input, delayed)")
    p.add_argument("--callback", choices=("python", "c", "auto"), default="python",
                   help="audio callback: python (default), c (cffi, built on first use; needs "
                   "a C compiler), auto (c when it builds)")
    p.add_argument("--realtime-priority", type=int, default=None, metavar="1-99",
                   help="run the inference worker under SCHED_FIFO at this priority (Linux; "
                   "root or an rtprio limit), so other busy programs cannot delay it; keep it "
                   "below JACK's (70+). Default: normal priority")
    p.add_argument("--sample-rate", type=int, default=None, help="stream rate (default: the "
                   "model's, 48000)")
    p.add_argument("--keep-below-hz", type=float, default=None, help="leave the input below "
                   "this frequency untouched; only the band above comes from the network")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads for "
                   f"inference (default {DEFAULT_THREADS}; see benchmarks/README.md)")
    p.add_argument("--low-latency", action="store_true", help="window 9.33 ms / hop 4.67 ms: "
                   "9.3 ms algorithmic latency instead of 21.3, for about 1.5x the compute")
    p.add_argument("--no-skirt-boost", action="store_true", help=NO_SKIRT_BOOST_HELP)
    p.set_defaults(func=live)
    d = sub.add_parser("devices", help="list audio devices for `rtbwe live`")
    d.set_defaults(func=devices)
