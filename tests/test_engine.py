"""InferenceEngine: backends agree with the eager model, errors say what to do."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import rtbwe
from rtbwe import engine
from helpers import random_tiny

WINDOW = 960
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (cuda-graph backend); none visible")


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return random_tiny(0)


def _frames(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, WINDOW)).astype(np.float32)


def _eager(model: nn.Module, frames: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(frames)[:, None]).numpy()[:, 0]


def test_eager_runs_the_batch_in_place_and_matches_the_model(tiny):
    eng = engine.InferenceEngine(tiny, WINDOW, device="cpu", backend="eager", num_threads=1)
    assert eng.backend == "eager" and eng.device.type == "cpu"
    frames = _frames(5)
    expected = _eager(tiny, frames)
    eng.run(frames, 3, frames)  # only the first 3 rows
    np.testing.assert_allclose(frames[:3], expected[:3], atol=1e-5)
    np.testing.assert_array_equal(frames[3:], _frames(5)[3:])
    assert torch.get_num_threads() == 1


def test_auto_picks_onnx_or_eager_on_cpu(tiny):
    from rtbwe.engine_onnx import onnx_missing

    cpu = "eager" if onnx_missing() else "onnx"  # onnx: tests/test_onnx.py
    assert engine.resolve_backend("auto", torch.device("cpu")) == cpu
    assert engine.resolve_backend("auto", torch.device("cuda")) == "cuda-graph"


def test_torchscript_backend_matches_eager_for_any_batch_and_is_quiet(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked Deprecation/TracerWarning fails the test
        eng = engine.InferenceEngine(tiny, WINDOW, device="cpu", backend="torchscript")
        for rows in (1, 2, 7):
            frames = _frames(rows, seed=rows)
            out = np.empty_like(frames)
            eng.run(frames, rows, out)
            np.testing.assert_allclose(out, _eager(tiny, frames), atol=1e-5)
    assert isinstance(eng._module, torch.jit.ScriptModule)


def test_torchscript_export_load_roundtrip(tiny, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = engine.export_torchscript(tiny, tmp_path / "tiny.ts", WINDOW, 48000)
        module, meta = engine.load_torchscript(path)
    assert meta["window_samples"] == WINDOW and meta["sample_rate"] == 48000
    frames = _frames(2)
    with torch.inference_mode():
        loaded = module(torch.from_numpy(frames)[:, None]).numpy()[:, 0]
    np.testing.assert_allclose(loaded, _eager(tiny, frames), atol=1e-5)
    (tmp_path / "bad.ts").write_bytes(b"not a zip")
    with pytest.raises(rtbwe.ModelLoadingError, match="cannot load TorchScript"):
        engine.load_torchscript(tmp_path / "bad.ts")


def test_model_changing_the_shape_is_refused():
    class Halves(nn.Module):
        def forward(self, x):
            return x[..., ::2]

    with pytest.raises(ValueError, match=r"\(batch, 1, samples\) -> \(batch, 1, samples\)"):
        engine.InferenceEngine(Halves(), WINDOW, device="cpu")


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="tensorrt"), "choose one of auto, eager, torchscript, cuda-graph"),
    (dict(device="tpu"), "pass 'auto', 'cpu' or 'cuda'"),
    (dict(num_threads=0), "num_threads must be >= 1"),
])
def test_bad_arguments_say_what_to_pass(kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.InferenceEngine(nn.Identity(), WINDOW, **kwargs)


def test_cuda_graph_on_cpu_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        engine.InferenceEngine(nn.Identity(), WINDOW, device="cpu", backend="cuda-graph")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error message")
def test_cuda_device_without_gpu_says_so():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        engine.InferenceEngine(nn.Identity(), WINDOW, device="cuda")


def test_graph_buckets_are_powers_of_two():
    assert [engine._CudaGraphRunner.bucket(r) for r in (1, 2, 3, 4, 5, 17)] == [1, 2, 4, 4, 8, 32]


@needs_cuda
@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(tiny):
    eng = engine.InferenceEngine(copy.deepcopy(tiny), WINDOW, device="cuda", backend="cuda-graph")
    for rows in (1, 3, 4, 3):  # 3 after 4 replays the padded 4-bucket graph
        frames = _frames(rows, seed=rows)
        out = np.empty_like(frames)
        eng.run(frames, rows, out)
        np.testing.assert_allclose(out, _eager(tiny, frames), atol=1e-4)
    assert set(eng._graphs.graphs) == {1, 4}


@needs_cuda
@pytest.mark.gpu
def test_extender_on_cuda_graph_matches_cpu(tiny):
    from rtbwe import BandwidthExtender

    x = _frames(2, seed=9).reshape(2, -1)
    cpu = BandwidthExtender(tiny, device="cpu").process(x, 48000)
    gpu = BandwidthExtender(copy.deepcopy(tiny), device="cuda").process(x, 48000)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
