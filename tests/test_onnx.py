"""ONNX Runtime backend: equals eager on windows, streaming equals offline, auto falls back."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rtbwe import engine, engine_onnx, models
from rtbwe.processor import BandwidthExtender
from helpers import random_tiny

ort = pytest.importorskip("onnxruntime", reason="backend='onnx' needs onnxruntime "
                          "(pip install 'rtbwe[fast]')")
pytest.importorskip("onnx", reason="the ONNX exporter needs onnx (pip install 'rtbwe[fast]')")

RATE = 48000
WINDOW = 1024


def _cond_net(bands: int | None = None) -> nn.Module:
    """tiny-cond with a FiLM that does something (it starts at zero)."""
    torch.manual_seed(1)
    net = models.build("tiny-cond", **({} if bands is None else {"condition_bands": bands}))
    with torch.no_grad():
        for p in net.film.parameters():
            p.normal_(0.0, 0.2)
    return net.eval()


def _eager(model: nn.Module, frames: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
    inputs = [torch.from_numpy(frames)[:, None]]
    if conditions is not None:
        inputs.append(torch.from_numpy(conditions))
    with torch.inference_mode():
        return model(*inputs).numpy()[:, 0]


def _windows(rows: int, bands: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Noise at -20 dBFS RMS, a music level: the float32 rounding error of both runtimes
    scales with the output (about 2e-6 of its peak), so 1e-5 absolute needs a real level."""
    rng = np.random.default_rng(seed)
    frames = (0.1 * rng.standard_normal((rows, WINDOW))).astype(np.float32)
    return frames, (rng.random((rows, bands)).astype(np.float32) if bands else None)


@pytest.mark.parametrize("name", ["tiny", "tiny-cond", "tiny-cond-48", "default"])
def test_onnx_equals_eager_on_windows_of_1_2_and_7_rows(name):
    if name == "default":
        from rtbwe.weights import load_model
        model = load_model("default").eval()
    elif name == "tiny":
        model = random_tiny(0)
    else:  # the 40-band layout and the 48-band one the wide model takes
        model = _cond_net(48 if name.endswith("48") else None)
    eng = engine.InferenceEngine(model, WINDOW, device="cpu", backend="onnx", num_threads=1)
    assert eng.backend == "onnx" and eng.fallback_reason is None
    assert eng._onnx.session.get_session_options().intra_op_num_threads == 1
    bands = eng.condition_bands
    assert (bands > 0) == (name != "tiny")
    for rows in (1, 2, 7, 1):
        frames, conditions = _windows(rows, bands, seed=rows)
        out = np.full((rows + 1, WINDOW), 7.0, np.float32)
        eng.run(frames, rows, out, conditions)
        expected = _eager(model, frames, conditions)
        assert np.abs(expected - frames).max() > 1e-2  # the network changes the windows
        np.testing.assert_allclose(out[:rows], expected, atol=1e-5)
        np.testing.assert_array_equal(out[rows:], 7.0)  # nothing past `rows` is written


@pytest.mark.parametrize("model", ["tiny", "tiny-cond"])
@pytest.mark.parametrize("channels", [1, 2])
def test_onnx_streaming_equals_offline_and_eager(model, channels):
    net = random_tiny(0) if model == "tiny" else _cond_net()
    bwe = BandwidthExtender(net, num_threads=1, backend="onnx", passband="free")
    eager = BandwidthExtender(net, num_threads=1, backend="eager", passband="free")
    assert bwe.backend == "onnx"
    blocks = [1, 65, 8193, 480, *[1] * 300, 512, 2000]
    x = (0.3 * np.random.default_rng(channels).standard_normal((channels, sum(blocks))))
    x = x.astype(np.float32)
    offline = bwe.process(x, RATE)
    np.testing.assert_allclose(offline, eager.process(x, RATE), atol=1e-5)
    assert np.abs(offline - x).max() > 1e-2
    outs, at = [], 0
    for size in blocks:
        outs.append(bwe.process(x[:, at:at + size], RATE, reset=False))
        at += size
    stream = np.concatenate(outs, axis=1)
    latency = bwe.latency_samples
    np.testing.assert_allclose(stream[:, latency:], offline[:, :-latency], atol=1e-5)


def test_onnx_threads_follow_the_engine_setting():
    eng = engine.InferenceEngine(random_tiny(0), WINDOW, device="cpu", backend="onnx",
                                 num_threads=2)
    assert eng._onnx.session.get_session_options().intra_op_num_threads == 2
    torch.set_num_threads(1)


def test_auto_picks_onnx_on_cpu_when_installed():
    assert engine.resolve_backend("auto", torch.device("cpu")) == "onnx"
    assert BandwidthExtender(random_tiny(0), num_threads=1).backend == "onnx"


def test_auto_without_onnxruntime_is_eager_and_onnx_says_what_to_install(monkeypatch):
    monkeypatch.setattr(engine_onnx, "onnx_missing", lambda: "backend='onnx' needs "
                        "onnxruntime; pip install 'rtbwe[fast]'")
    assert engine.resolve_backend("auto", torch.device("cpu")) == "eager"
    with pytest.raises(ValueError, match=r"pip install 'rtbwe\[fast\]'"):
        engine.resolve_backend("onnx", torch.device("cpu"))


class _Branchy(nn.Module):
    """Python control flow on values: the trace (on zeros) keeps the wrong branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x if float(x.abs().sum()) > 0 else x


def test_export_that_differs_from_eager_is_refused_and_auto_falls_back():
    with pytest.raises(ValueError, match="differs from eager"):
        engine.InferenceEngine(_Branchy(), WINDOW, device="cpu", backend="onnx")
    eng = engine.InferenceEngine(_Branchy(), WINDOW, device="cpu", backend="auto")
    assert eng.backend == "eager" and "differs from eager" in eng.fallback_reason
    frames, _ = _windows(2, 0, seed=3)
    out = np.empty_like(frames)
    eng.run(frames, 2, out)
    np.testing.assert_allclose(out, 2 * frames, atol=1e-6)


def test_onnx_on_cuda_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="runs on the CPU"):
        engine.resolve_backend("onnx", torch.device("cuda"))


def test_export_onnx_file_runs_anywhere_with_its_metadata(tmp_path):
    net = _cond_net()
    path = engine_onnx.export_onnx(net, tmp_path / "m.onnx", WINDOW, RATE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["rtbwe.json"])
    assert meta == {"window_samples": WINDOW, "sample_rate": RATE, "condition_bands": 40}
    assert [i.name for i in session.get_inputs()] == ["x", "condition"]
    frames, conditions = _windows(3, 40, seed=5)
    y = session.run(None, {"x": frames[:, None], "condition": conditions})[0]
    np.testing.assert_allclose(y[:, 0], _eager(net, frames, conditions), atol=1e-5)


def test_bench_times_the_default_model_on_every_cpu_backend(monkeypatch, capsys):
    from rtbwe import benchmarking, cli

    built = []
    original = benchmarking.build_extender
    monkeypatch.setattr(benchmarking, "build_extender", lambda model, backend, *a, **k:
                        built.append((model, backend)) or original(model, backend, *a, **k))
    monkeypatch.setattr(benchmarking, "time_kernels", lambda **k: {
        "numba_us": 1.0, "numpy_us": 1.0, "speedup": 1.0})
    assert cli.main(["bench", "--threads", "1", "--seconds", "0.05"]) == 0
    assert built == [("default", b) for b in ("eager", "torchscript", "onnx")]
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert {row[1] for row in rows if row and row[0] == "default"} == {
        "eager", "torchscript", "onnx"}  # each timed on the backend it names


def test_export_is_reused_for_the_same_weights_only():
    net = random_tiny(0)
    first = engine_onnx.onnx_bytes(net, WINDOW)
    assert engine_onnx.onnx_bytes(random_tiny(0), WINDOW) is first  # same class and weights
    assert engine_onnx.onnx_bytes(net, 512) is not first            # another window
    with torch.no_grad():
        net.out.bias += 0.5
    changed = engine.InferenceEngine(net, WINDOW, device="cpu", backend="onnx")
    frames, _ = _windows(1, 0, seed=4)
    out = np.empty_like(frames)
    changed.run(frames, 1, out)
    np.testing.assert_allclose(out, _eager(net, frames, None), atol=1e-5)  # not the old graph


@pytest.mark.parametrize("name", ["tiny-cond", "arunet-small-half-cond-6k"])
def test_any_length_runner_equals_eager_off_the_models_multiple(name):
    """The cutoff scaler's network runs on lengths that follow the cutoff (multiples of 16,
    not of the model's 64): each one equals eager (the runner pads and crops as the model
    does inside)."""
    if name == "tiny-cond":
        model = _cond_net()
    else:
        from rtbwe.weights import load_model
        model = load_model(name).eval()
    runner = engine_onnx.AnyLengthOnnxRunner(model, num_threads=1)
    assert runner.session.get_session_options().intra_op_num_threads == 1
    for rows, samples in [(1, 576), (2, 688), (1, 1040), (3, 1360), (1, 1024)]:
        rng = np.random.default_rng(samples)
        frames = (0.1 * rng.standard_normal((rows, samples))).astype(np.float32)
        conditions = rng.random((rows, runner.bands)).astype(np.float32)
        got = runner(frames, conditions)
        expected = _eager(model, frames, conditions)
        assert got.shape == (rows, samples) and np.abs(expected - frames).max() > 1e-2
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_any_length_export_that_differs_from_eager_is_refused():
    with pytest.raises(ValueError, match="differs from eager"):
        engine_onnx.AnyLengthOnnxRunner(_Branchy(), num_threads=1)


def test_the_scaled_default_runs_its_scaled_network_in_onnx_when_the_engine_does(monkeypatch):
    """`default` scales Butterworth 5-9.9 kHz windows: with backend='onnx' (what auto picks)
    the scaled network runs in ONNX Runtime too, equal to the eager extender, and streaming
    still equals offline."""
    from helpers import stream_in_random_blocks
    from test_skirt import _music_like_noise

    from rtbwe import rescale
    from rtbwe.filters import lowpass

    calls = []
    original = engine_onnx.AnyLengthOnnxRunner.__call__
    monkeypatch.setattr(engine_onnx.AnyLengthOnnxRunner, "__call__",
                        lambda self, *a: calls.append(a[0].shape) or original(self, *a))
    ref = _music_like_noise(3.0, 7)
    x = np.stack([lowpass(ref, RATE, 6000, "butter", 6),
                  lowpass(ref[::-1], RATE, 8000, "butter", 6)]).astype(np.float32)
    bwe = BandwidthExtender("default", num_threads=1, backend="onnx")
    eager = BandwidthExtender("default", num_threads=1, backend="eager")
    bwe.process(x[:, :RATE // 10], RATE)  # builds the scaled network's session
    calls.clear()
    offline = bwe.process(x, RATE)
    lengths = {shape[1] for shape in calls}  # the scaled network's lengths, in ONNX
    assert min(lengths) < 1100 < 1300 < max(lengths) < 1400, lengths  # 6 and 8 kHz x 1024 / 6
    reference = eager.process(x, RATE)
    assert np.abs(reference - x).max() > 1e-3  # something was added
    np.testing.assert_allclose(offline, reference, atol=1e-4)
    streamed = stream_in_random_blocks(bwe, x, RATE, max_block=4000, seed=2)
    lat = bwe.latency_samples
    np.testing.assert_allclose(streamed[:, lat:], offline[:, :-lat], atol=2e-5)
    monkeypatch.setattr(rescale, "_onnx_scaled", lambda *a: (_ for _ in ()).throw(
        RuntimeError("no export")))
    fallback = rescale.CutoffScaler("arunet-small-half-cond-6k", RATE, WINDOW, 6000.0,
                                    backend="onnx")
    assert fallback.backend == "eager" and "no export" in fallback.fallback_reason
