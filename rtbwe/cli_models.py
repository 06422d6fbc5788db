"""``rtbwe models``: the shipped weights with their model cards, then the networks' cost.

The cost of a network comes from one forward pass of a short input on the ``meta`` device
(shapes only: no weight initialisation, no memory, no arithmetic), so the paper-size networks
(55-61 M parameters, up to 2.6 TMAC per second of audio) cost milliseconds each; the first
pass pays a one-time 2-3 s import inside torch (``torch._dynamo``, which meta-device batch norm
pulls in):

* MACs: every ``Conv1d``'s output length x output channels x input channels per group x kernel,
  for an input of a whole number of the network's length multiples, scaled to one second.
* Receptive field: the input span that one aligned block of ``multiple`` outputs depends on,
  minus ``multiple - 1``, walked back through the convolutions in reverse order (a x2 pixel
  shuffle, seen as a doubled length between two convolutions, halves the positions). This is
  exactly what :func:`rtbwe.models.receptive_field` measures with gradients (tested), because in
  these U-Nets and ResNets every skip path is a prefix of the deepest path.
"""
from __future__ import annotations

import argparse
import json

TEST_ONLY = ("tiny", "tiny-cond")       # registry networks for tests, not for users
PROBE_MULTIPLES = 64                     # the probe input: this many length multiples


def network_cost(name: str, sample_rate: int = 48000) -> dict[str, float]:
    """Parameters, receptive field (samples, ms) and GMAC per second of registry ``name``."""
    import torch
    from torch import nn

    from . import models

    with torch.device("meta"):  # no weight initialisation, no memory, no arithmetic
        net = models.build(name).eval()
    multiple = getattr(net, "multiple", 1)
    length = multiple * PROBE_MULTIPLES
    convs: list[tuple[int, int, int, int, int, int]] = []
    macs = 0

    def hook(module: nn.Conv1d, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal macs
        k = module.kernel_size[0]
        macs += out.shape[1] * out.shape[2] * (module.in_channels // module.groups) * k
        convs.append((inputs[0].shape[-1], out.shape[-1], k, module.stride[0],
                      module.dilation[0], module.padding[0]))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv1d)]
    try:
        with torch.inference_mode():
            models.call(net, torch.zeros(1, 1, length, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    low, high, at = 0, multiple - 1, length   # output positions, at a tensor of `at` samples
    for n_in, n_out, k, stride, dilation, padding in reversed(convs):
        while at > n_out:      # a x2 upsampling between this convolution and the next
            low, high, at = low // 2, high // 2, at // 2
        low, high, at = low * stride - padding, high * stride - padding + dilation * (k - 1), n_in
    receptive = high - low + 1 - (multiple - 1)
    return {"parameters": models.count_parameters(net), "receptive_field_samples": receptive,
            "receptive_field_ms": 1000.0 * receptive / sample_rate,
            "gmacs_per_second": macs * sample_rate / length / 1e9}


MATRIX_SUMMARY_ROWS = ("full band", "butter-6 4 kHz", "cheby1-6 6 kHz", "butter-6 8 kHz",
                       "resampled via 16 kHz", "mp3 64 kbps")


def shipped_rows() -> list[str]:
    """One block per shipped name: what it was trained for, test metrics, size."""
    from .weights import SHIPPED, WEIGHTS_DIR

    rows = []
    for name, stem in SHIPPED.items():
        card_path = WEIGHTS_DIR / f"{stem}.json"
        if not card_path.exists():
            rows.append(f"{name:22s} (not in this install)")
            continue
        card = json.loads(card_path.read_text())
        size_mb = (WEIGHTS_DIR / card.get("weights_file", f"{stem}.safetensors")).stat().st_size
        alias = f" = {stem}" if name != stem else ""
        wide = card.get("training", {}).get("degradations") == "wide"
        trained_for = ("band-limited anywhere from 3 to 16 kHz (filters, resamplers, MP3, GSM)"
                       if wide else f"band-limited at {card.get('cutoff_hz', 0) / 1000:g} kHz")
        rows.append(f"{name + alias:22s} {card.get('model', '?')} ({card.get('parameters', 0):,} "
                    f"parameters, {size_mb / 1e6:.1f} MB), {card.get('sample_rate', 0) / 1000:g} "
                    f"kHz audio {trained_for}, {card.get('steps', '?')} steps")
        for row in card.get("matrix", {}).get("rows", []):
            if row.get("name") in MATRIX_SUMMARY_ROWS and row.get("clips"):
                rows.append(f"{'':24s}test matrix, {row['name']}: ΔSNR {row['dsnr_db']:+.2f} dB"
                            if row["name"] != "full band" else
                            f"{'':24s}test matrix, full band: output {row['dsnr_db']:.1f} dB "
                            "from its input")
        metrics = card.get("test_metrics", {})
        for split, result in metrics.get("model", {}).items():
            base = metrics.get("input", {}).get(split, {})
            rows.append(f"{'':24s}test, {split} filter {result.get('filter', '?')}: SNR "
                        f"{base.get('snr', float('nan')):.2f} -> {result['snr']:.2f} dB "
                        f"(ΔSNR {result['dsnr']:+.2f}), LSD-HF {base.get('lsd_hf', float('nan')):.3f}"
                        f" -> {result['lsd_hf']:.3f}")
        if not metrics and "matrix" not in card:
            rows.append(f"{'':24s}(no test metrics in its card)")
    return rows


def list_models(args: argparse.Namespace) -> int:
    from . import models

    if not args.names:
        print("shipped weights (`rtbwe process --model NAME`; `default` is used when none is "
              "given):")
        print("\n".join(shipped_rows()))
        print("\nnetworks (`rtbwe-train` configs; built with random weights):")
    names = args.names or [n for n in models.names() if args.all or n not in TEST_ONLY]
    print(f"{'name':18s} {'params':>12s} {'RF samples':>11s} {'RF ms':>8s} {'GMAC/s':>9s}  summary")
    for name in names:
        try:
            info = network_cost(name, args.sample_rate)
        except ValueError as err:
            print(f"rtbwe models: {err}")
            return 2
        print(f"{name:18s} {info['parameters']:12,d} {info['receptive_field_samples']:11d} "
              f"{info['receptive_field_ms']:8.1f} {info['gmacs_per_second']:9.2f}  "
              f"{models.summary(name)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="shipped weights (model cards) and every network's cost: "
                       "parameters, receptive field, GMAC per second")
    p.add_argument("names", nargs="*", help="registry networks to list (default: all but the "
                   "test networks; shipped weights are listed when no name is given)")
    p.add_argument("--sample-rate", type=int, default=48000,
                   help="audio rate for receptive field in ms and GMAC per second (default 48000)")
    p.add_argument("--all", action="store_true", help="include the test-only networks "
                   f"({', '.join(TEST_ONLY)})")
    p.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)  # old flag: now a no-op
    p.set_defaults(func=list_models)
