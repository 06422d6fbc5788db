"""ONNX Runtime backend of the inference engine (``backend="onnx"``, what ``auto`` picks on CPU).

The model is exported once, at construction, with ``torch.onnx.export`` at the fixed window
length and a dynamic batch axis ``rows``:

======== ================================ =====================================================
input    ``x`` (rows, 1, window_samples)   the windows, float32
input    ``condition`` (rows, bands)       only for a conditioned model (any ``condition_bands``)
output   ``y`` (rows, 1, window_samples)
======== ================================ =====================================================

and run by an ``onnxruntime.InferenceSession`` on the CPU execution provider with
``intra_op_num_threads`` = the engine's thread count, one inter-op thread and sequential
execution. Like TorchScript, the session holds a copy of the weights: change the module's
weights after building an engine and the engine does not see it.

Why: timed interleaved in one process at 1 thread on our 2-core CPU with 1-2 windows per call
(the streaming batch sizes), ONNX Runtime ran the shipped default in about 0.4 of eager's time
and well under TorchScript's; OpenVINO came close behind (benchmarks/README.md, "Inference
runtimes", with the load during each measurement).

:class:`AnyLengthOnnxRunner` exports a model with the time axis dynamic too, for the cutoff
scaler (:mod:`rtbwe.rescale`), whose window length follows the detected cutoff.

Needs the optional extra ``fast`` (``pip install 'rtbwe[fast]'``: onnxruntime, and onnx for
the exporter). :func:`onnx_missing` says why the backend cannot run, or None.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .conditioning import condition_bands

ONNX_OPSET = 17
PARITY_ATOL = 1e-4        # an exported model further than this from eager on a probe is refused
EXPORT_CACHE_SIZE = 8     # exports kept per process, keyed by class, structure, weights, window
_exports: OrderedDict[tuple, bytes] = OrderedDict()
_exports_lock = threading.Lock()


def onnx_missing() -> str | None:
    """None if the ONNX backend can run here, else what to install."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError as err:
        return (f"backend='onnx' needs onnxruntime and onnx ({err}); "
                "pip install 'rtbwe[fast]'")
    return None


def _example(model: nn.Module, window_samples: int) -> tuple[torch.Tensor, ...]:
    from .engine import example_inputs

    return example_inputs(model, 2, window_samples)


def _export_key(model: nn.Module, window_samples: int,
                dynamic_length: bool = False) -> tuple | None:
    """What the exported graph depends on: class, structure (repr), every tensor of the state
    dict (sha256 of its bytes), window length. None if a tensor cannot be read as bytes."""
    digest = hashlib.sha256()
    try:
        for name, tensor in model.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                          .numpy().tobytes())
    except (RuntimeError, TypeError):
        return None
    return (type(model).__module__, type(model).__qualname__, repr(model), int(window_samples),
            bool(dynamic_length), digest.hexdigest())


def onnx_bytes(model: nn.Module, window_samples: int, dynamic_length: bool = False) -> bytes:
    """``model`` (on CPU, put in eval mode) as an ONNX graph, batch axis dynamic; with
    ``dynamic_length`` the time axis too (:class:`AnyLengthOnnxRunner`).

    The TorchScript-based exporter (``dynamo=False``) takes 0.5-1 s for the default model;
    the ``torch.export``-based one 15 s, so it is used only where the former is gone. The
    last ``EXPORT_CACHE_SIZE`` exports are reused for a model of the same class, structure
    and weights (many extenders on one network pay one export).
    """
    model = model.eval()
    key = _export_key(model, window_samples, dynamic_length)
    with _exports_lock:
        if key is not None and key in _exports:
            _exports.move_to_end(key)
            return _exports[key]
    graph = _export(model, window_samples, dynamic_length)
    if key is not None:
        with _exports_lock:
            _exports[key] = graph
            while len(_exports) > EXPORT_CACHE_SIZE:
                _exports.popitem(last=False)
    return graph


def _export(model: nn.Module, window_samples: int, dynamic_length: bool) -> bytes:
    example = _example(model, window_samples)
    names = ["x", "condition"][:len(example)]
    axes = {name: {0: "rows"} for name in [*names, "y"]}
    if dynamic_length:
        axes["x"][2] = axes["y"][2] = "samples"
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(model, example, buffer, dynamo=False, input_names=names,
                              output_names=["y"], opset_version=ONNX_OPSET,
                              dynamic_axes=axes)
        except TypeError:  # a torch without the TorchScript-based exporter
            rows = torch.export.Dim("rows", min=1, max=4096)
            shapes = [{0: rows} for _ in names]
            if dynamic_length:
                shapes[0][2] = torch.export.Dim("samples", min=1, max=1 << 20)
            program = torch.onnx.export(model, example, None, dynamo=True, input_names=names,
                                        output_names=["y"], dynamic_shapes=shapes)
            return program.model_proto.SerializeToString()
    return buffer.getvalue()


def export_onnx(model: nn.Module, path: str | Path, window_samples: int,
                sample_rate: int) -> Path:
    """Save ``model`` as an ``.onnx`` file for other hosts (C++, C#, the browser), with
    ``rtbwe.json`` = ``{"window_samples", "sample_rate", "condition_bands"}`` in the model's
    metadata. Inputs ``x`` (rows, 1, window_samples) [and ``condition`` (rows, bands)],
    output ``y`` (rows, 1, window_samples). Returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    proto = onnx.load_from_string(onnx_bytes(model, window_samples))
    meta = {"window_samples": int(window_samples), "sample_rate": int(sample_rate),
            "condition_bands": condition_bands(model)}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "rtbwe.json", json.dumps(meta)
    path.write_bytes(proto.SerializeToString())
    return path


def _require_onnx() -> None:
    missing = onnx_missing()
    if missing:
        raise ValueError(missing)


def _session(graph: bytes, num_threads: int):
    """An onnxruntime session for ``graph`` on the CPU: ``num_threads`` intra-op threads, one
    inter-op thread, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _probe(model: nn.Module, rows: int, samples: int, bands: int, seed: int
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Random windows (rows, samples) at -20 dBFS RMS [and conditions (rows, bands)] and what
    eager ``model`` makes of them (rows, samples), for a parity check."""
    rng = np.random.default_rng(seed)
    frames = (0.1 * rng.standard_normal((rows, samples))).astype(np.float32)
    conditions = rng.random((rows, bands)).astype(np.float32) if bands else None
    inputs = [torch.from_numpy(frames)[:, None]]
    if conditions is not None:
        inputs.append(torch.from_numpy(conditions))
    with torch.inference_mode():
        return frames, conditions, model(*inputs).numpy()[:, 0]


class OnnxRunner:
    """An onnxruntime session for ``model`` at ``window_samples``; :meth:`run` is the engine's.

    Args:
        model: an ``nn.Module`` (or TorchScript module) the engine accepts, on CPU.
        window_samples: the fixed window length.
        num_threads: onnxruntime intra-op threads (the engine's setting; None: torch's now).
    Raises ValueError if onnxruntime is missing or the exported graph does not match eager
    on a probe window (``PARITY_ATOL``); the exporter's own errors pass through.
    """

    def __init__(self, model: nn.Module, window_samples: int, num_threads: int | None = None):
        _require_onnx()
        self.window_samples = int(window_samples)
        self.bands = condition_bands(model)
        self.num_threads = int(num_threads or torch.get_num_threads())
        self.session = _session(onnx_bytes(model, self.window_samples), self.num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.check_parity(model)

    def check_parity(self, model: nn.Module) -> None:
        """One random window (and condition) through eager and the session; they must agree."""
        frames, conditions, expected = _probe(model, 1, self.window_samples, self.bands, 0)
        got = np.empty_like(frames)
        self.run(frames, 1, got, conditions)
        error = float(np.max(np.abs(got - expected)))
        if not error <= PARITY_ATOL:
            raise ValueError(f"the ONNX export of this model differs from eager by {error:.3g} "
                             f"(> {PARITY_ATOL}) on a probe window; use backend='eager'")

    def run(self, frames: np.ndarray, rows: int, out: np.ndarray,
            conditions: np.ndarray | None) -> None:
        """``frames[:rows]`` (rows, window_samples) [+ ``conditions[:rows]`` (rows, bands)]
        float32 -> ``out[:rows]``; ``frames`` and ``out`` may be the same array."""
        feed = {self.input_names[0]: np.ascontiguousarray(frames[:rows], np.float32)
                .reshape(rows, 1, self.window_samples)}
        if conditions is not None:
            feed[self.input_names[1]] = np.ascontiguousarray(conditions[:rows], np.float32)
        result = self.session.run(None, feed)[0]
        out[:rows] = result.reshape(rows, self.window_samples)


class AnyLengthOnnxRunner:
    """An onnxruntime session for ``model`` on windows of any length (the cutoff scaler's
    network, :mod:`rtbwe.rescale`, runs on a length that follows the detected cutoff).

    The graph is exported once with the time axis dynamic, traced at a length that is a
    multiple of the model's ``multiple`` (what its strided layers need; 1 for a model without
    one), where the model's own zero padding is a no-op and leaves no fixed-length node in the
    graph. Each call therefore zero-pads the windows' end to that multiple and crops back,
    which is what the eager model does inside (:func:`rtbwe.models.layers.pad_to_multiple`).

    Args:
        model: an ``nn.Module`` mapping ``(rows, 1, n) [, (rows, bands)] -> (rows, 1, n)``.
        num_threads: onnxruntime intra-op threads (None: torch's now).
        example_samples: about the length it will run on (the trace's length is this,
            rounded up to the model's multiple).
    Raises ValueError if onnxruntime is missing or the graph differs from eager by more than
    ``PARITY_ATOL`` on a probe at the traced length or at a length off the multiple.
    """

    def __init__(self, model: nn.Module, num_threads: int | None = None,
                 example_samples: int = 1024):
        _require_onnx()
        self.multiple = max(1, int(getattr(model, "multiple", 1) or 1))
        traced = -(-int(example_samples) // self.multiple) * self.multiple
        self.bands = condition_bands(model)
        self.num_threads = int(num_threads or torch.get_num_threads())
        self.session = _session(onnx_bytes(model.eval(), traced, dynamic_length=True),
                                self.num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        for samples in (traced, traced + self.multiple // 2 + 1):
            self.check_parity(model, samples)

    def check_parity(self, model: nn.Module, samples: int) -> None:
        """Two random windows of ``samples`` through eager and the session; they must agree."""
        frames, conditions, expected = _probe(model, 2, samples, self.bands, samples)
        error = float(np.max(np.abs(self(frames, conditions) - expected)))
        if not error <= PARITY_ATOL:
            raise ValueError(f"the any-length ONNX export of this model differs from eager by "
                             f"{error:.3g} (> {PARITY_ATOL}) on {samples}-sample windows")

    def __call__(self, frames: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
        """frames (rows, samples) [+ conditions (rows, bands)] float32 -> (rows, samples)."""
        rows, samples = frames.shape
        padded = np.zeros((rows, 1, samples + (-samples) % self.multiple), np.float32)
        padded[:, 0, :samples] = frames
        feed = {self.input_names[0]: padded}
        if conditions is not None:
            feed[self.input_names[1]] = np.ascontiguousarray(conditions, np.float32)
        return self.session.run(None, feed)[0][:, 0, :samples]
