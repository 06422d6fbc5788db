"""The ``rtbwe`` command: a thin argparse layer over the library.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func``; this file only dispatches (demucs' ``separate.py`` split).
Registering imports no torch, numba or pedalboard (each ``func`` imports what it needs), so
``rtbwe --help`` and ``rtbwe --version`` answer in a fraction of a second.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# module -> the sub-commands it registers
SUBCOMMAND_MODULES = [
    "rtbwe.cli_models",    # models
    "rtbwe.cli_process",   # process, bench
    "rtbwe.cli_live",      # live, devices
    "rtbwe.demo",          # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtbwe", description="Real-time audio bandwidth "
                                     "extension: band-limited audio in, full-band 48 kHz out.")
    parser.add_argument("--version", action="version", version=f"rtbwe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # sub-command not built in this install
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
