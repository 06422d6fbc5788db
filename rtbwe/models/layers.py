"""Small building blocks shared by ARUNet and the paper's baselines.

Padding arithmetic lives in pure functions (as in audiocraft's ``conv.py``) so the
networks stay thin. Every network here maps ``(batch, 1, samples)`` to
``(batch, 1, samples)`` for any ``samples``: :func:`pad_to_multiple` pads the end with
zeros to the multiple the strided layers need and the caller crops back.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.2


def required_multiple(num_downsamples: int) -> int:
    """Length multiple a network with ``num_downsamples`` stride-2 layers needs."""
    return 2**num_downsamples


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int]:
    """Zero-pad ``x`` (batch, channels, samples) at the end to a multiple of ``multiple``.

    Returns the padded tensor and the number of samples added.
    """
    length = x.shape[-1]
    extra = (-length) % multiple
    if extra:
        x = F.pad(x, (0, extra))
    return x, extra


def same_padding(kernel_size: int) -> int:
    """Padding that keeps ``length / stride`` samples for odd kernels."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd for symmetric padding, got {kernel_size}")
    return kernel_size // 2


def pixel_shuffle_1d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """1-D sub-pixel upsampling: (B, C*r, T) -> (B, C, T*r).

    Channel ``c*r + i`` becomes phase ``i`` of output channel ``c`` (Kuleshov's SubPixel1D).
    """
    batch, channels, length = x.shape
    if channels % factor:
        raise ValueError(f"pixel_shuffle_1d needs channels divisible by {factor}, got {channels}")
    x = x.reshape(batch, channels // factor, factor, length)
    return x.permute(0, 1, 3, 2).reshape(batch, channels // factor, length * factor)


class PixelShuffle1d(nn.Module):
    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_1d(x, self.factor)


class ConvAct(nn.Module):
    """Conv1d -> LeakyReLU -> optional BatchNorm -> optional Dropout.

    The paper orders LeakyReLU before BatchNorm in the encoder; we keep that order.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 batch_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=same_padding(kernel_size))
        self.norm = nn.BatchNorm1d(out_channels) if batch_norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(F.leaky_relu(self.conv(x), LEAKY_SLOPE)))


class Residual(nn.Module):
    """``E = R(x) + x`` where R is a stride-1 :class:`ConvAct` with equal channels."""

    def __init__(self, channels: int, kernel_size: int, batch_norm: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.body = ConvAct(channels, channels, kernel_size, 1, batch_norm, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class FixedLengthWrapper(nn.Module):
    """Pads any input to the network's multiple, runs it, crops back, adds the global residual.

    Subclasses implement ``core(x)`` on inputs whose length is a multiple of ``self.multiple``.
    """

    multiple: int = 1
    global_residual: bool = True

    def __init__(self) -> None:
        super().__init__()
        # applied to the predicted residual; rtbwe.passband.ResidualHighpass locks the passband
        self.residual_filter: nn.Module = nn.Identity()

    def core(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, 1, samples) -> (batch, 1, samples)."""
        return self.finish(x, self.core(self.pad_input(x)))

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check (batch, 1, samples) and zero-pad the end to the network's multiple."""
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, samples), got shape {tuple(x.shape)}")
        return pad_to_multiple(x, self.multiple)[0]

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Crop the core's output to the input length and add the global residual."""
        y = y[..., :x.shape[-1]]
        return x + self.residual_filter(y) if self.global_residual else y


class FiLM(nn.Module):
    """Feature-wise affine modulation from a conditioning vector, per site.

    ``condition`` (batch, condition_dim) -> one (scale, shift) pair per site; a site's
    features (batch, channels, time) become ``x * (1 + scale) + shift``. The last layer
    starts at zero, so a new FiLM leaves a trained network unchanged.
    """

    def __init__(self, condition_dim: int, site_channels: Sequence[int], hidden: int = 64):
        super().__init__()
        self.site_channels = [int(c) for c in site_channels]
        self.net = nn.Sequential(nn.Linear(condition_dim, hidden), nn.LeakyReLU(LEAKY_SLOPE),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(LEAKY_SLOPE),
                                 nn.Linear(hidden, 2 * sum(self.site_channels)))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, condition: torch.Tensor) -> list[torch.Tensor]:
        """(batch, condition_dim) -> per site a (batch, 2, channels, 1) (scale, shift) pair."""
        params = self.net(condition).unsqueeze(-1)  # (batch, 2 * sum(channels), 1)
        sizes = [2 * c for c in self.site_channels]
        return [p.view(p.shape[0], 2, -1, 1) for p in torch.split(params, sizes, dim=1)]


def modulate(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """x (batch, channels, time) with a FiLM pair (batch, 2, channels, 1):
    ``x * (1 + scale) + shift``."""
    return torch.addcmul(params[:, 1], x, params[:, 0] + 1.0)


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise conv weights.

    ``"default"`` keeps PyTorch's Kaiming-uniform init (our choice);
    ``"normal"`` is the paper's literal N(0, 1), which we measured to explode
    (see ``tests/test_models.py::test_normal_init_explodes``) and keep only for study;
    ``"orthogonal"`` is an alternative some BWE repos use.
    """
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            if scheme == "normal":
                nn.init.normal_(m.weight, 0.0, 1.0)
            elif scheme == "orthogonal":
                nn.init.orthogonal_(m.weight)
            else:
                raise ValueError(f"unknown init {scheme!r}; use 'default', 'normal' or 'orthogonal'")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def zero_output(conv: nn.Conv1d) -> None:
    """Zero the last conv so a global-residual network starts as the identity.

    Our choice (not in the paper): training then starts at the input's SNR instead of
    below it, and the first steps are spent adding high band rather than removing noise.
    """
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def conv_output_length(length: int, kernel_size: int, stride: int) -> int:
    return math.floor((length + 2 * (kernel_size // 2) - kernel_size) / stride) + 1
