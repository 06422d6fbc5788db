"""Where ONNX Runtime spends a window of an ARUNet, per U-Net level, and what narrower
variants cost (issue 14: a cheaper network).

    python benchmarks/profile_levels.py                       # the shipped default, per level
    python benchmarks/profile_levels.py --candidates          # + narrower variants, timed
    python benchmarks/profile_levels.py --json out.json

Per level: ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) on the exported
graph, 1 intra-op thread, one window of ``--window`` samples (batch ``--rows``), summed over
``--runs`` calls; each node is charged to the module its ONNX name comes from
(``/encoders.0/...`` -> ``enc1``; the decoders are numbered from the bottleneck, so
``decoders.4`` is the full-rate ``dec1``). Alongside, the multiply-accumulates of the convs
at that level (from the weights' shapes and the lengths at each level).

Candidates: each variant with random weights, exported the same way, timed interleaved call by
call with the shipped default (median of ``--rounds`` calls, ratio to the default), so machine
load moves all of them together.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch


def level_of(node_name: str, levels: int) -> str:
    """ONNX node name -> the U-Net level it belongs to (enc1..encN, bottleneck, decN..dec1,
    film, out, other). Decoder ``i`` (0-based, from the bottleneck) is level ``N - i``."""
    match = re.search(r"(encoders|decoders)\.(\d+)", node_name)
    if match:
        index = int(match.group(2))
        return f"enc{index + 1}" if match.group(1) == "encoders" else f"dec{levels - index}"
    for part in ("bottleneck", "film", "out"):
        if f"/{part}" in node_name:
            return part
    return "other"


def conv_macs_per_level(model: torch.nn.Module, window_samples: int) -> dict[str, float]:
    """Multiply-accumulates per window of each level's convs: (out, in/groups, k) weights
    times the output length (hooks on one eager call)."""
    macs: dict[str, float] = defaultdict(float)
    levels = len(model.encoders)
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv1d):
            def hook(mod, _inp, out, name=name):
                macs[level_of("/" + name, levels)] += mod.weight.numel() * out.shape[-1]
            handles.append(module.register_forward_hook(hook))
    with torch.inference_mode():
        model(*_inputs(model, 1, window_samples))
    for h in handles:
        h.remove()
    return dict(macs)


def _inputs(model, rows: int, window_samples: int) -> tuple[torch.Tensor, ...]:
    from rtbwe.engine import example_inputs

    return tuple(0.1 * torch.randn_like(t) for t in example_inputs(model, rows, window_samples))


def _session(model, window_samples: int, profile_dir: str | None = None):
    import onnxruntime as ort

    from rtbwe.engine_onnx import onnx_bytes

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, "ort")
    return ort.InferenceSession(onnx_bytes(model, window_samples), options,
                                providers=["CPUExecutionProvider"])


def _feed(session, model, rows: int, window_samples: int) -> dict[str, np.ndarray]:
    return {i.name: t.numpy() for i, t in zip(session.get_inputs(),
                                                _inputs(model, rows, window_samples))}


def profile_levels(model, window_samples: int, rows: int, runs: int) -> dict[str, float]:
    """Microseconds per call spent in each level's ONNX nodes (after graph optimisation;
    a fused node counts where its name points)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = _session(model, window_samples, tmp)
        feed = _feed(session, model, rows, window_samples)
        for _ in range(20):
            session.run(None, feed)
        session.end_profiling()
        session = _session(model, window_samples, tmp)
        for _ in range(20):  # warm-up of the profiled session, dropped below
            session.run(None, feed)
        path = session.end_profiling()
        warm = json.load(open(path))
        session = _session(model, window_samples, tmp)
        for _ in range(20 + runs):
            session.run(None, feed)
        events = json.load(open(session.end_profiling()))
    skip = defaultdict(float)
    for e in warm:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            skip[level_of(e["name"], len(model.encoders))] += e["dur"]
    per_level: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_level[level_of(e["name"], len(model.encoders))] += e["dur"]
    return {k: (per_level[k] - skip[k]) / runs for k in per_level}


def time_interleaved(models: dict[str, torch.nn.Module], window_samples: int, rows: int,
                     rounds: int) -> dict[str, float]:
    """Median ms per call of each model's ONNX session, one call of each per round."""
    sessions = {k: _session(m, window_samples) for k, m in models.items()}
    feeds = {k: _feed(sessions[k], models[k], rows, window_samples) for k in models}
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds + 20):
        for k, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds[k])
            if r >= 20:
                times[k].append(1000 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


CANDIDATES = {  # narrower arunet-small-cond variants (filters, kernels, bottleneck)
    "half": dict(filters=(8, 16, 16, 32, 32), kernel_sizes=(17, 9, 9, 9, 9),
                 bottleneck_filters=32),
    "half-full-rate": dict(filters=(8, 16, 32, 64, 64), kernel_sizes=(17, 9, 9, 9, 9),
                           bottleneck_filters=64),
    "half-full-rate-k9": dict(filters=(8, 16, 32, 64, 64), kernel_sizes=(9, 9, 9, 9, 9),
                              bottleneck_filters=64),
    "outer-half-inner-3/4": dict(filters=(8, 16, 24, 48, 48), kernel_sizes=(17, 9, 9, 9, 9),
                                 bottleneck_filters=48),
    "3/4": dict(filters=(12, 24, 24, 48, 48), kernel_sizes=(17, 9, 9, 9, 9),
                bottleneck_filters=48),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default", help="shipped name or card (default default)")
    p.add_argument("--window", type=int, default=1024, help="window samples (default 1024)")
    p.add_argument("--rows", type=int, default=1, help="windows per call (default 1)")
    p.add_argument("--runs", type=int, default=300, help="profiled calls (default 300)")
    p.add_argument("--rounds", type=int, default=300, help="timed rounds (default 300)")
    p.add_argument("--candidates", action="store_true", help="also time CANDIDATES")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from rtbwe.models import build as build_model
    from rtbwe.weights import load_model

    model = load_model(args.model).eval()
    macs = conv_macs_per_level(model, args.window)
    per_level = profile_levels(model, args.window, args.rows, args.runs)
    total = sum(per_level.values())
    order = [f"enc{i + 1}" for i in range(len(model.encoders))] + ["bottleneck"] + \
        [f"dec{len(model.encoders) - i}" for i in range(len(model.encoders))] + \
        ["out", "film", "other"]
    print(f"{args.model}: window {args.window}, {args.rows} row(s), 1 thread, "
          f"load {os.getloadavg()[0]:.2f}; node time {total / 1000:.3f} ms per call")
    print("| level | µs per call | share | conv MMAC | µs per MMAC |")
    print("|---|---:|---:|---:|---:|")
    for k in order:
        if k in per_level:
            m = macs.get(k, 0) / 1e6
            print(f"| {k} | {per_level[k]:.0f} | {per_level[k] / total:.0%} | {m:.2f} | "
                  f"{per_level[k] / m if m else float('nan'):.0f} |")
    report = {"model": args.model, "window": args.window, "rows": args.rows,
              "load_1min": os.getloadavg()[0], "per_level_us": per_level,
              "conv_macs": macs}
    if args.candidates:
        kwargs = {k: v for k, v in model.card["model_kwargs"].items()} \
            if hasattr(model, "card") else {}
        models = {"shipped": model}
        for name, change in CANDIDATES.items():
            models[name] = build_model(model.card["model"], **{**kwargs, **change}).eval()
        ms = time_interleaved(models, args.window, args.rows, args.rounds)
        print(f"\ninterleaved, median of {args.rounds} calls, load {os.getloadavg()[0]:.2f}")
        print("| variant | parameters | conv MMAC | ms per call | vs shipped |")
        print("|---|---:|---:|---:|---:|")
        for name, m in models.items():
            params = sum(t.numel() for t in m.parameters())
            mm = sum(conv_macs_per_level(m, args.window).values()) / 1e6
            print(f"| {name} | {params:,} | {mm:.1f} | {ms[name]:.3f} | "
                  f"{ms[name] / ms['shipped']:.2f} |")
        report["candidates_ms"] = ms
        report["load_after"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
