"""Model registry: ``build(name, **overrides)`` and per-model facts.

Every model maps ``(batch, 1, samples) -> (batch, 1, samples)`` for any ``samples``.

>>> from rtbwe import models
>>> net = models.build("arunet-small")
>>> models.describe(net)["parameters"] > 0
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..conditioning import condition_bands
from .arunet import ARUNet, ConditionedARUNet, SMALL_KWARGS
from .baselines import ResNet, UNet
from .layers import pixel_shuffle_1d

__all__ = ["ARUNet", "ConditionedARUNet", "UNet", "ResNet", "build", "names", "describe", "receptive_field",
           "macs_per_second", "count_parameters", "pixel_shuffle_1d", "MODEL_CLASSES"]

MODEL_CLASSES: dict[str, type[nn.Module]] = {"ARUNet": ARUNet, "ConditionedARUNet": ConditionedARUNet,
                                             "UNet": UNet, "ResNet": ResNet}


@dataclass(frozen=True)
class _Entry:
    cls: type[nn.Module]
    kwargs: dict[str, Any]
    summary: str


_REGISTRY: dict[str, _Entry] = {
    "arunet": _Entry(ARUNet, {}, "the paper's ARUNet (128-512 filters, kernels 65-9)"),
    "arunet-small": _Entry(ARUNet, dict(SMALL_KWARGS), "ARUNet narrowed to stream on 2 CPU cores"),
    "arunet-small-cond": _Entry(ConditionedARUNet, dict(SMALL_KWARGS),
                                "arunet-small that also sees the input's long-term spectrum"),
    "unet": _Entry(UNet, {}, "U-Net baseline (Kuleshov / Sulun & Davies)"),
    "unet-bn": _Entry(UNet, {"batch_norm": True}, "U-Net with batch norm"),
    "unet-do": _Entry(UNet, {"dropout": 0.5}, "U-Net with dropout 0.5"),
    "resnet": _Entry(ResNet, {}, "ResNet baseline (15 blocks x 512 ch, kernel 7)"),
    "resnet-bn": _Entry(ResNet, {"batch_norm": True}, "ResNet with batch norm"),
    "resnet-do": _Entry(ResNet, {"dropout": 0.5}, "ResNet with dropout 0.5"),
    # A tiny network for tests and smoke runs; not a product model.
    "tiny": _Entry(ARUNet, dict(filters=(4, 4, 8, 8, 8), kernel_sizes=(9, 9, 9, 9, 9),
                                bottleneck_filters=8, dropout=0.0, zero_init_output=False),
                  "tiny ARUNet for tests (random output conv, so it is not the identity)"),
    "tiny-cond": _Entry(ConditionedARUNet, dict(filters=(4, 4, 8, 8, 8), kernel_sizes=(9,) * 5,
                                                bottleneck_filters=8, dropout=0.0,
                                                zero_init_output=False),
                        "tiny conditioned ARUNet for tests"),
}


def names() -> list[str]:
    """Registered model names."""
    return list(_REGISTRY)


def build(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` replace its constructor kwargs."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}") from None
    return entry.cls(**{**entry.kwargs, **overrides})


def build_kwargs(name: str, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """Class name and full constructor kwargs for a registered model (for model cards)."""
    entry = _REGISTRY[name]
    return entry.cls.__name__, {**entry.kwargs, **overrides}


def summary(name: str) -> str:
    return _REGISTRY[name].summary


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, with a zero condition for a conditioned model (the condition is one
    long-term vector per window, so it does not enter the receptive field or the MACs of
    the waveform path)."""
    bands = condition_bands(model)
    return model(x, x.new_zeros(x.shape[0], bands)) if bands else model(x)


def _eval_copy_state(model: nn.Module) -> Callable[[], None]:
    was_training = model.training
    model.eval()
    return lambda: model.train(was_training)


def receptive_field(model: nn.Module, probe_samples: int = 16384) -> int:
    """Receptive field in samples, measured by back-propagating from a block of outputs.

    A block of ``m`` outputs (``m`` = the model's length multiple, so every stride phase is
    covered) at the centre of a zero-padded probe is summed and differentiated; the span of
    inputs with non-zero gradient minus ``m - 1`` is the receptive field. Measured in eval mode.
    """
    import copy

    model = copy.deepcopy(model)
    for m in model.modules():  # a zero-initialised output conv would hide the network
        if isinstance(m, nn.Conv1d) and not m.weight.detach().any():
            nn.init.normal_(m.weight, 0.0, 0.1)
    restore = _eval_copy_state(model)
    try:
        multiple = getattr(model, "multiple", 1)
        x = torch.randn(1, 1, probe_samples, requires_grad=True)
        y = call(model, x)
        centre = probe_samples // 2
        y[..., centre:centre + multiple].sum().backward()
        nonzero = torch.nonzero(x.grad[0, 0].abs() > 0).flatten()
        span = int(nonzero.max() - nonzero.min() + 1)
        if nonzero.min() == 0 or nonzero.max() == probe_samples - 1:
            if probe_samples >= 1 << 20:
                raise RuntimeError("receptive field larger than 2**20 samples")
            return receptive_field(model, probe_samples * 4)
        return span - (multiple - 1)
    finally:
        restore()


def macs_per_second(model: nn.Module, sample_rate: int = 48000) -> float:
    """Multiply-accumulates of the conv layers for one second of audio at ``sample_rate``."""
    total = 0

    def hook(module: nn.Conv1d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0]
        total += out.shape[1] * out.shape[2] * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv1d)]
    restore = _eval_copy_state(model)
    try:
        with torch.inference_mode():
            call(model, torch.zeros(1, 1, sample_rate))
    finally:
        restore()
        for h in handles:
            h.remove()
    return float(total)


def describe(model: nn.Module, sample_rate: int = 48000) -> dict[str, float]:
    """Parameter count, receptive field (samples, ms) and MACs per second of audio."""
    rf = receptive_field(model)
    return {"parameters": count_parameters(model), "receptive_field_samples": rf,
            "receptive_field_ms": 1000.0 * rf / sample_rate,
            "gmacs_per_second": macs_per_second(model, sample_rate) / 1e9}
