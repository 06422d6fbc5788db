"""Inference runtimes and streaming modes side by side, timed round-robin in one process.

Every test here interleaves its contenders call by call (one call of each per round), so a
change in the machine's load during the run hits all of them alike: the ratios are what to
read; the absolute times move with the load, which each row records (``load_1min`` from
``os.getloadavg`` before and after).

* ``test_window_runtimes``: the shipped default model on one batch of windows ``(rows, 1024)``
  (+ its condition), rows 1 and 2 (mono and stereo hops), 1 and 2 threads, through eager,
  TorchScript, ONNX Runtime, OpenVINO (if installed), ONNX Runtime on the int8 dynamic
  quantisation of the graph (weights int8, activations quantised per call), and, timing only,
  ONNX Runtime on the graph with every batch norm removed: the most that folding batch norm
  could save (the norms follow a LeakyReLU, so they cannot fold into their own conv; folding
  into the next conv is not exact at its zero padding). Each row also records the largest
  difference from eager on that batch.
* ``test_streaming_modes``: ``BandwidthExtender(default)`` streaming, host block = hop, for
  eager / TorchScript / ONNX at the default geometry (1024/512, 21.3 ms), and ONNX at
  hop = 3/4 window (1024/768) and at the low-latency geometries 448/224 (9.3 ms) and
  384/192 (8.0 ms); RT factor and p99 per hop.
* ``test_mode_quality``: ΔSNR of those geometries on the bundled demo clip (test split, 8 s),
  seen and unseen filter, three hop-grid phases (not the full evaluation matrix), with the
  detected-band lock (the default) and without (``passband="free"``, the network's own output).
"""
from __future__ import annotations

import copy
import os
import time

import numpy as np
import pytest
import torch

from rtbwe import engine
from rtbwe.benchmarking import InterleavedStreams, build_extender

RATE = 48000
WINDOW = 1024


@pytest.fixture(scope="module")
def default_model():
    from rtbwe.weights import ModelLoadingError, load_model

    try:
        return load_model("default").eval()
    except ModelLoadingError as err:
        pytest.skip(f"needs the shipped default weights: {err}")


def _session(onnx_path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def _runners(model, threads: int, tmp_path) -> dict:
    """name -> f(frames (rows, W), conditions (rows, bands)) -> (rows, W), all at ``threads``."""
    out: dict = {}
    for backend in ("eager", "torchscript", "onnx"):
        try:
            eng = engine.InferenceEngine(model, WINDOW, device="cpu", backend=backend,
                                         num_threads=threads)
        except ValueError:  # onnx not installed
            continue

        def run(frames, conditions, eng=eng):
            result = np.empty_like(frames)
            eng.run(frames, frames.shape[0], result, conditions)
            return result
        out[backend] = run
    if "onnx" not in out:
        return out
    from rtbwe.engine_onnx import onnx_bytes

    path = tmp_path / "default.onnx"
    path.write_bytes(onnx_bytes(model, WINDOW))

    def ort_runner(session):
        names = [i.name for i in session.get_inputs()]
        return lambda f, c: session.run(None, {names[0]: f[:, None], names[1]: c})[0][:, 0]

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(tmp_path / "int8.onnx"), weight_type=QuantType.QInt8)
        out["onnx-int8"] = ort_runner(_session(str(tmp_path / "int8.onnx"), threads))
    except Exception as err:  # noqa: BLE001 - recorded, not fatal
        print(f"onnx int8 dynamic quantisation failed: {err}")
    no_bn = copy.deepcopy(model)
    for module in no_bn.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.BatchNorm1d):
                setattr(module, name, torch.nn.Identity())
    (tmp_path / "nobn.onnx").write_bytes(onnx_bytes(no_bn, WINDOW))
    out["onnx-no-bn (timing only)"] = ort_runner(_session(str(tmp_path / "nobn.onnx"), threads))
    try:
        import openvino as ov
    except ImportError:
        return out
    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out["openvino"] = lambda f, c: request.infer({0: f[:, None], 1: c})[0][:, 0].copy()
    return out


@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_window_runtimes(benchmark, record, default_model, tmp_path, threads, rows):
    runners = _runners(default_model, threads, tmp_path)
    rng = np.random.default_rng(rows)
    frames = (0.1 * rng.standard_normal((rows, WINDOW))).astype(np.float32)
    conditions = rng.random((rows, default_model.condition_bands)).astype(np.float32)
    reference = runners["eager"](frames, conditions)
    errors = {name: float(np.abs(run(frames, conditions) - reference).max())
              for name, run in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}

    def one_round():
        for name, run in runners.items():
            begun = time.perf_counter()
            run(frames, conditions)
            times[name].append(time.perf_counter() - begun)

    load_before = os.getloadavg()[0]
    # 2 threads on a busy 2-core machine can take a second per round (torch collapses)
    benchmark.pedantic(one_round, rounds=300 if threads == 1 else 60, iterations=1,
                       warmup_rounds=20)
    skip = 20  # pedantic's warm-up rounds are in `times` too
    eager_ms = 1e3 * float(np.median(times["eager"][skip:]))
    figures = {"load_1min": f"{load_before:.2f}->{os.getloadavg()[0]:.2f}"}
    for name, values in times.items():
        median_ms = 1e3 * float(np.median(values[skip:]))
        figures[f"{name}_ms"] = median_ms
        figures[f"{name}_p99_ms"] = 1e3 * float(np.percentile(values[skip:], 99))
        figures[f"{name}_vs_eager"] = median_ms / eager_ms
        figures[f"{name}_max_error"] = f"{errors[name]:.1e}"
    record(**figures)
    torch.set_num_threads(1)


MODES = [("eager", 1024, 512), ("torchscript", 1024, 512), ("onnx", 1024, 512),
         ("onnx", 1024, 768), ("onnx", 448, 224), ("onnx", 384, 192)]


@pytest.mark.parametrize("channels", [1, 2])
def test_streaming_modes(benchmark, record, default_model, channels):
    extenders = {f"{b}-{w}/{h}": build_extender("default", b, 1, 1000 * w / RATE, 1000 * h / RATE)
                 for b, w, h in MODES if b != "onnx" or engine.resolve_backend("auto", torch.device(
                     "cpu")) == "onnx"}
    streams = InterleavedStreams(extenders, channels, RATE, seed=channels)
    load_before = os.getloadavg()[0]
    benchmark.pedantic(streams.one_round, rounds=int(4.0 * RATE) // 512, iterations=1,
                       warmup_rounds=20)
    figures = {"load_1min": f"{load_before:.2f}->{os.getloadavg()[0]:.2f}"}
    for name in extenders:
        measured = streams.figures(name, 20)
        for key in ("rt", "p99_ms", "hop_ms", "latency_ms"):
            figures[f"{name}_{key}"] = measured[key]
    record(**figures)


@pytest.mark.parametrize("passband", ["detected", "free"])
@pytest.mark.parametrize("window_samples, hop_samples", [(w, h) for _, w, h in MODES[2:]],
                         ids=[f"W{w}-H{h}" for _, w, h in MODES[2:]])
def test_mode_quality(benchmark, record, default_model, window_samples, hop_samples, passband):
    import soundfile as sf

    from rtbwe import filters, metrics
    from rtbwe.demo import DEMO_CLIP
    from rtbwe.processor import BandwidthExtender

    reference, rate = sf.read(str(DEMO_CLIP), dtype="float32")
    bwe = BandwidthExtender(default_model, backend="eager", window_ms=1000 * window_samples / rate,
                            hop_ms=1000 * hop_samples / rate, passband=passband,
                            num_threads=1)
    figures = {"latency_ms": bwe.latency_ms}

    def measure():
        for name, spec in filters.TEST_FILTERS.items():
            lowpassed = filters.apply(reference, rate, 6000.0, spec).astype(np.float32)
            gains = []
            for k in range(3):
                lead = k * hop_samples // 3
                padded = np.concatenate([np.zeros(lead, np.float32), lowpassed])
                estimate = bwe.process(padded, rate)[lead:]
                gains.append(metrics.snr_db(reference, estimate)
                             - metrics.snr_db(reference, lowpassed))
            figures[f"{name}_dsnr"] = float(np.mean(gains))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    record(**figures)
