"""Peer networks for ``test_peers.py`` that are not on PyPI, rebuilt for timing only.

**Random weights: these time the published topology, they do not extend bandwidth.**

``SEANetBWE``: the SEANet waveform encoder-decoder (Tagliasacchi et al., 2020) as used for
real-time bandwidth extension (Li et al., ICASSP 2021): causal convolutions (left padding
only), ELU, an input conv of kernel 7, four encoder blocks with strides (2, 2, 8, 8), each of
three residual units (dilated kernel-3 conv with dilations 1, 3, 9, then a 1x1 conv) and a
strided conv of kernel 2 x stride that doubles the channels, a kernel-7 bottleneck, the
mirrored decoder with transposed convs and a skip from each encoder level, a kernel-7 output
conv, and the input added to the output. ``channels`` (the first level's width) is ours: 8
gives 0.58 M parameters, about rtbwe's default size (0.57 M), so the comparison is topology
against topology.

Shapes: ``forward(x)``: x (batch, 1, samples), samples a multiple of 256 -> (batch, 1, samples).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (2, 2, 8, 8)
DILATIONS = (1, 3, 9)


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only: output ``t`` sees inputs ``<= t`` (times the stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.dilation[0] * (self.kernel_size[0] - 1) - (self.stride[0] - 1)
        return super().forward(F.pad(x, (max(left, 0), 0)))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv with the look-ahead part of its output trimmed (causal)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out[..., :x.shape[-1] * self.stride[0]]


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = CausalConv1d(channels, channels, 3, dilation=dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(F.elu(self.conv(F.elu(x))))


class SEANetBWE(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.multiple = 1
        for stride in STRIDES:
            self.multiple *= stride
        widths = [channels * 2**i for i in range(len(STRIDES) + 1)]
        self.inp = CausalConv1d(1, widths[0], 7)
        self.down = nn.ModuleList()
        for i, stride in enumerate(STRIDES):
            self.down.append(nn.Sequential(
                *[ResidualUnit(widths[i], d) for d in DILATIONS], nn.ELU(),
                CausalConv1d(widths[i], widths[i + 1], 2 * stride, stride=stride)))
        self.bottleneck = CausalConv1d(widths[-1], widths[-1], 7)
        self.up = nn.ModuleList()
        for i, stride in reversed(list(enumerate(STRIDES))):
            self.up.append(nn.ModuleDict({
                "conv": CausalConvTranspose1d(widths[i + 1], widths[i], 2 * stride, stride=stride),
                "res": nn.Sequential(*[ResidualUnit(widths[i], d) for d in DILATIONS])}))
        self.out = CausalConv1d(widths[0], 1, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(h)
        h = self.bottleneck(F.elu(h))
        for block, skip in zip(self.up, reversed(skips)):
            h = block["res"](block["conv"](F.elu(h)) + skip)
        return x + self.out(F.elu(h))
