"""Inference engine: runs a model on a fixed-length batch of windows, as fast as the device allows.

The processor hands the engine a float32 array of windows, ``(rows, window_samples)``, and a
preallocated output array of the same shape; the engine runs the model on them as ONE batch
``(rows, 1, window_samples)`` and writes the result in place. A conditioned model (one with
``condition_bands > 0``, :mod:`rtbwe.conditioning`) also gets ``conditions``
``(rows, condition_bands)``, one vector per window. Backends:

========== ============================================================================
eager      the ``nn.Module`` under ``torch.inference_mode`` (CPU or CUDA)
torchscript the module traced at ``window_samples``, frozen and ``optimize_for_inference``;
           optional and measured (TorchScript is deprecated in torch >= 2.11, but C++ hosts
           still load it). Its deprecation warnings are silenced here, never shown to users.
cuda-graph the batch captured once per batch-size bucket in a ``torch.cuda.CUDAGraph`` and
           replayed; input and output live in static device tensors and pinned host buffers.
onnx       the module exported to ONNX at ``window_samples`` (dynamic batch) and run by ONNX
           Runtime on the CPU with the engine's thread count (:mod:`rtbwe.engine_onnx`;
           optional extra ``rtbwe[fast]``).
auto       ``cuda-graph`` when the device is CUDA; on CPU ``onnx`` when onnxruntime is
           installed (measured fastest at 1 thread, see benchmarks/README.md), else
           ``eager``. If the export fails or does not match eager, ``auto`` falls back to
           ``eager`` and says why in ``InferenceEngine.fallback_reason``.
========== ============================================================================

``num_threads`` calls ``torch.set_num_threads``, which is process-wide in PyTorch.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .conditioning import condition_bands

BACKENDS = ("auto", "eager", "torchscript", "cuda-graph", "onnx")


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence TorchScript's deprecation and tracer warnings for the enclosed calls only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else is checked and returned."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; pass 'auto', 'cpu' or 'cuda'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible to torch; pass device='cpu' "
                         "or device='auto'")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; pass 'auto', 'cpu' or 'cuda'")
    return resolved


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from .engine_onnx import onnx_missing

    if backend == "auto":
        if device.type == "cuda":
            return "cuda-graph"
        return "eager" if onnx_missing() else "onnx"
    if backend == "cuda-graph" and device.type != "cuda":
        raise ValueError("backend='cuda-graph' needs a CUDA device; pass device='cuda' or use "
                         "backend='eager' / 'torchscript' / 'onnx' on CPU")
    if backend == "onnx":
        if device.type != "cpu":
            raise ValueError("backend='onnx' runs on the CPU; pass device='cpu' (or use "
                             "backend='cuda-graph' on CUDA)")
        if onnx_missing():
            raise ValueError(onnx_missing())
    return backend


def example_inputs(model: nn.Module, rows: int, window_samples: int,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Zeros of the shapes ``model`` takes: ``(x,)`` or ``(x, condition)``."""
    x = torch.zeros(rows, 1, window_samples, device=device)
    bands = condition_bands(model)
    return (x, torch.zeros(rows, bands, device=device)) if bands else (x,)


def to_torchscript(model: nn.Module, window_samples: int, optimize: bool = True,
                   device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Trace ``model`` on ``(2, 1, window_samples)`` (and a ``(2, bands)`` condition if it
    takes one), freeze it and (``optimize``) run ``torch.jit.optimize_for_inference``. The
    trace is valid for that window length only; the batch size may vary."""
    model = model.eval().to(device)
    example = example_inputs(model, 2, window_samples, device)
    with quiet_torchscript(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        if optimize:
            frozen = torch.jit.optimize_for_inference(frozen)
    if condition_bands(model):
        frozen.condition_bands = condition_bands(model)  # tracing drops Python attributes
    return frozen


def export_torchscript(model: nn.Module, path: str | Path, window_samples: int,
                       sample_rate: int, optimize: bool = True) -> Path:
    """Save a frozen TorchScript module for C++ hosts, with ``{"window_samples",
    "sample_rate"}`` stored in the archive as ``rtbwe.json``. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted = to_torchscript(model, window_samples, optimize)
    meta = {"window_samples": int(window_samples), "sample_rate": int(sample_rate),
            "condition_bands": condition_bands(model), "card": getattr(model, "card", None)}
    with quiet_torchscript():
        torch.jit.save(scripted, str(path),
                       _extra_files={"rtbwe.json": json.dumps(meta, default=str)})
    return path


TORCHSCRIPT_PROBE_TIMEOUT_S = 30.0


def load_torchscript(path: str | Path, device: str | torch.device = "cpu",
                     probe_timeout_s: float | None = TORCHSCRIPT_PROBE_TIMEOUT_S
                     ) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a module written by :func:`export_torchscript`; returns (module, metadata).

    **A TorchScript file is code**: its ``forward`` can loop forever, allocate without
    bound or read files. Load only ``.pt`` files you would run as a program; for weights
    from elsewhere use the safetensors + JSON card format (:func:`rtbwe.load_model`), which
    is data and is checked. What this function does check: the archive loads, its
    ``rtbwe.json`` metadata is a JSON object of the right types, and one window of a probe
    signal comes back finite, of the same shape, and not absurdly loud within
    ``probe_timeout_s`` seconds (None: no bound). A probe that times out keeps running on a
    daemon thread (Python cannot stop it), so a CLI should exit after this error. Every
    failure raises :class:`rtbwe.ModelLoadingError`.
    """
    from .weights import ModelLoadingError, probe_model

    extra = {"rtbwe.json": ""}
    try:
        with quiet_torchscript():
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as err:
        raise ModelLoadingError(f"cannot load TorchScript file {path}: {err}") from None
    try:
        meta = json.loads(extra["rtbwe.json"] or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ModelLoadingError(f"TorchScript file {path}: rtbwe.json is not JSON: {err}"
                                ) from None
    if not isinstance(meta, dict):
        raise ModelLoadingError(f"TorchScript file {path}: rtbwe.json must be a JSON object, "
                                f"got {type(meta).__name__}")
    for key, low, high in (("window_samples", 16, 1 << 16), ("sample_rate", 8000, 192000),
                           ("condition_bands", 0, 1024)):
        value = meta.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                      and low <= value <= high):
            raise ModelLoadingError(f"TorchScript file {path}: rtbwe.json {key} must be a whole "
                                    f"number in {low}..{high}, got {value!r}")
    if meta.get("condition_bands"):
        module.condition_bands = int(meta["condition_bands"])
    window_samples = int(meta.get("window_samples") or 1024)
    probe_model(module, window_samples, probe_timeout_s, what=f"TorchScript file {path}")
    return module, meta


class _CudaGraphRunner:
    """Captures ``model`` on a static ``(bucket, 1, window_samples)`` CUDA tensor per
    power-of-two batch bucket and replays it; smaller batches are zero-padded to the bucket."""

    def __init__(self, model: nn.Module, window_samples: int, device: torch.device):
        self.model, self.window_samples, self.device = model, window_samples, device
        self.stream = torch.cuda.Stream(device)
        self.bands = condition_bands(model)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...],
                                     torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.host_in = torch.empty(0)
        self.host_cond = torch.empty(0)
        self.host_out = torch.empty(0)

    @staticmethod
    def bucket(rows: int) -> int:
        return 1 << max(rows - 1, 0).bit_length()

    def capture(self, rows: int) -> None:
        size = self.bucket(rows)
        if size in self.graphs:
            return
        static = example_inputs(self.model, size, self.window_samples, self.device)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode():
            with torch.cuda.stream(self.stream):
                for _ in range(3):  # warm-up on the capture stream (cuDNN/cuBLAS handles)
                    self.model(*static)
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                static_out = self.model(*static)
        self.graphs[size] = (graph, static, static_out)
        if self.host_in.shape[0] < size:  # pinned host staging, grown outside the hot path
            self.host_in = torch.zeros(size, self.window_samples).pin_memory()
            self.host_cond = torch.zeros(size, self.bands).pin_memory()
            self.host_out = torch.zeros(size, self.window_samples).pin_memory()

    def run(self, frames: np.ndarray, rows: int, out: np.ndarray,
            conditions: np.ndarray | None) -> None:
        self.capture(rows)
        graph, static, static_out = self.graphs[self.bucket(rows)]
        static_in = static[0]
        host_in = self.host_in.numpy()
        host_in[:rows] = frames[:rows]
        static_in[:rows, 0].copy_(self.host_in[:rows], non_blocking=True)
        if static_in.shape[0] > rows:
            static_in[rows:].zero_()
        if conditions is not None:
            self.host_cond.numpy()[:rows] = conditions[:rows]
            static[1][:rows].copy_(self.host_cond[:rows], non_blocking=True)
        graph.replay()
        self.host_out[:rows].copy_(static_out[:rows, 0], non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        out[:rows] = self.host_out.numpy()[:rows]


class InferenceEngine:
    """Runs ``model`` on batches of windows ``(rows, window_samples)`` float32 -> same shape.

    Args:
        model: any ``nn.Module`` mapping ``(batch, 1, n) -> (batch, 1, n)``, or, with a
            ``condition_bands`` attribute, ``(x, condition (batch, bands)) -> (batch, 1, n)``;
            put in eval mode.
        window_samples: the fixed window length every batch has.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"``, ``"eager"``, ``"torchscript"``, ``"cuda-graph"`` or ``"onnx"``.
        num_threads: intra-op threads for CPU inference (process-wide for torch; ONNX
            Runtime's session gets the same number); None leaves torch's.

    ``fallback_reason``: why ``auto`` did not get the backend it chose first, or None.
    """

    def __init__(self, model: nn.Module, window_samples: int, device: str | torch.device = "auto",
                 backend: str = "auto", num_threads: int | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.window_samples = int(window_samples)
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.num_threads = num_threads
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(int(num_threads))
        self.model = model.eval().to(self.device)
        self.condition_bands = condition_bands(model)
        self._graphs: _CudaGraphRunner | None = None
        self._onnx: Any = None
        self.fallback_reason: str | None = None
        if self.backend == "torchscript":
            if isinstance(model, torch.jit.ScriptModule):
                self._module: Any = model
            else:
                self._module = to_torchscript(model, self.window_samples, device=self.device)
        else:
            self._module = self.model
        if self.backend == "cuda-graph":
            self._graphs = _CudaGraphRunner(self._module, self.window_samples, self.device)
        self.check_model()
        if self.backend == "onnx":  # after the shape check, whose error says more
            self._onnx = self._onnx_runner(backend == "auto")

    def _onnx_runner(self, may_fall_back: bool) -> Any:
        """The ONNX Runtime session; under ``auto`` a failed export falls back to eager."""
        from .engine_onnx import OnnxRunner

        try:
            return OnnxRunner(self.model, self.window_samples, self.num_threads)
        except Exception as err:  # the exporter raises many types; auto must still work
            if not may_fall_back:
                raise
            self.backend = "eager"
            self.fallback_reason = f"onnx: {type(err).__name__}: {err}"
            return None

    def check_model(self) -> None:
        """Run one window of zeros; raise ValueError if the model changes the shape."""
        probe = example_inputs(self.model, 1, self.window_samples, self.device)
        with torch.inference_mode(), quiet_torchscript():
            result = self._module(*probe)
        if not isinstance(result, torch.Tensor) or tuple(result.shape) != tuple(probe[0].shape):
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result)
            raise ValueError(f"the model must map (batch, 1, samples) -> (batch, 1, samples); "
                             f"it turned (1, 1, {self.window_samples}) into {shape}")

    def warm_up(self, rows: int = 1) -> None:
        """Run (and, for cuda-graph, capture) a batch of ``rows`` windows once."""
        frames = np.zeros((rows, self.window_samples), np.float32)
        conditions = np.zeros((rows, self.condition_bands), np.float32)
        self.run(frames, rows, frames, conditions if self.condition_bands else None)

    def run(self, frames: np.ndarray, rows: int, out: np.ndarray,
            conditions: np.ndarray | None = None) -> None:
        """Model on ``frames[:rows]`` (rows, window_samples) float32 -> ``out[:rows]``.

        ``frames`` and ``out`` may be the same array. The batch runs as one call.
        ``conditions`` (rows, condition_bands) float32: required by a conditioned model,
        refused by any other.
        """
        if rows == 0:
            return
        if frames.shape[1] != self.window_samples or out.shape[1] != self.window_samples:
            raise ValueError(f"engine expects windows of {self.window_samples} samples, got "
                             f"{frames.shape[1]}")
        if (conditions is None) != (self.condition_bands == 0):
            raise ValueError(f"this model takes {self.condition_bands} condition bands per "
                             f"window but conditions={'None' if conditions is None else 'given'}")
        if conditions is not None and (conditions.shape[1] != self.condition_bands
                                       or conditions.shape[0] < rows):
            raise ValueError(f"conditions must be (rows={rows}, {self.condition_bands}), got "
                             f"{conditions.shape}")
        if self.num_threads is not None and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        if self._graphs is not None:
            self._graphs.run(frames, rows, out, conditions)
            return
        if self._onnx is not None:
            self._onnx.run(frames, rows, out, conditions)
            return
        inputs = [torch.from_numpy(frames[:rows]).view(rows, 1, self.window_samples)]
        if conditions is not None:
            inputs.append(torch.from_numpy(conditions[:rows]))
        with torch.inference_mode():
            if self.device.type != "cpu":
                inputs = [t.to(self.device, non_blocking=True) for t in inputs]
            result = self._module(*inputs)
            torch.from_numpy(out[:rows]).copy_(result.view(rows, self.window_samples))
