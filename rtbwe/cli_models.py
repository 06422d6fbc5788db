"""``rtbwe models``: list the registered networks with their cost."""
from __future__ import annotations

import argparse


def list_models(args: argparse.Namespace) -> int:
    from . import models

    names = args.names or models.names()
    print(f"{'name':18s} {'params':>12s} {'RF samples':>11s} {'RF ms':>8s} {'GMAC/s':>9s}  summary")
    for name in names:
        net = models.build(name)
        if args.fast:
            info = {"parameters": models.count_parameters(net), "receptive_field_samples": 0,
                    "receptive_field_ms": 0.0, "gmacs_per_second": 0.0}
        else:
            info = models.describe(net, args.sample_rate)
        print(f"{name:18s} {info['parameters']:12,d} {info['receptive_field_samples']:11d} "
              f"{info['receptive_field_ms']:8.1f} {info['gmacs_per_second']:9.2f}  "
              f"{models.summary(name)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models: parameters, receptive field, GMAC per second")
    p.add_argument("names", nargs="*", help="model names (default: all)")
    p.add_argument("--sample-rate", type=int, default=48000)
    p.add_argument("--fast", action="store_true", help="parameter counts only")
    p.set_defaults(func=list_models)
