"""The paper's baselines: Kuleshov/Sulun's waveform U-Net and an EDSR-style ResNet.

Both map (batch, 1, samples) -> (batch, 1, samples) for any ``samples`` and add a
global residual (output = input + predicted high band).

U-Net::

    x ─ down1 ─ down2 ─ down3 ─ down4 ─ bottleneck ─ up4 ─ up3 ─ up2 ─ up1 ─ out(x2) ─(+x)
       L/2     L/4     L/8     L/16    L/32          L/16  L/8   L/4   L/2   L
    down: Conv(stride 2) [-> BN] -> LeakyReLU [-> Dropout]
    up:   Conv(2F) [-> BN] [-> Dropout] -> ReLU -> PixelShuffle x2 -> cat(skip)

ResNet: Conv(1->512) -> 15 x [x + 0.1 * Conv(ReLU(Conv(x)))] -> Conv(512->1) -> (+x).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import (LEAKY_SLOPE, FixedLengthWrapper, PixelShuffle1d, init_weights,
                     required_multiple, same_padding, zero_output)

UNET_FILTERS = (128, 256, 512, 512)
UNET_KERNELS = (65, 33, 17, 9)


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm1d(channels) if batch_norm else nn.Identity()


def _drop(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, batch_norm: bool, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, stride=2, padding=same_padding(k))
        self.norm, self.drop = _norm(cout, batch_norm), _drop(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(F.leaky_relu(self.norm(self.conv(x)), LEAKY_SLOPE))


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, batch_norm: bool, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(cin, 2 * cout, k, padding=same_padding(k))
        self.norm, self.drop = _norm(2 * cout, batch_norm), _drop(dropout)
        self.up = PixelShuffle1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.drop(self.norm(self.conv(x)))))


class UNet(FixedLengthWrapper):
    """The paper's U-Net baseline (Kuleshov's AudioUNet, as used by Sulun & Davies)."""

    def __init__(self, filters: Sequence[int] = UNET_FILTERS,
                 kernel_sizes: Sequence[int] = UNET_KERNELS, bottleneck_filters: int = 512,
                 bottleneck_kernel: int = 9, batch_norm: bool = False, dropout: float = 0.0,
                 global_residual: bool = True, init: str = "default",
                 zero_init_output: bool = True):
        super().__init__()
        filters, kernel_sizes = list(filters), list(kernel_sizes)
        if len(filters) != len(kernel_sizes):
            raise ValueError("filters and kernel_sizes need one entry per level")
        self.multiple = required_multiple(len(filters) + 1)
        self.global_residual = global_residual
        self.downs = nn.ModuleList()
        cin = 1
        for f, k in zip(filters, kernel_sizes):
            self.downs.append(_Down(cin, f, k, batch_norm, dropout))
            cin = f
        # Kuleshov's bottleneck always uses dropout 0.5; we follow the variant flag instead so
        # that the "plain" U-Net really has no dropout.
        self.bottleneck = _Down(cin, bottleneck_filters, bottleneck_kernel, False, dropout)
        self.ups = nn.ModuleList()
        cin = bottleneck_filters
        for f, k in zip(reversed(filters), reversed(kernel_sizes)):
            self.ups.append(_Up(cin, f, k, batch_norm, dropout))
            cin = 2 * f  # upsampled features concatenated with the skip
        self.out = nn.Conv1d(cin, 2, 9, padding=4)
        self.shuffle = PixelShuffle1d(2)
        init_weights(self, init)
        if zero_init_output and global_residual:
            zero_output(self.out)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.bottleneck(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = torch.cat([up(x), skip], dim=1)
        return self.shuffle(self.out(x))


class _ResBlock(nn.Module):
    def __init__(self, channels: int, k: int, scale: float, batch_norm: bool, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, k, padding=same_padding(k))
        self.conv2 = nn.Conv1d(channels, channels, k, padding=same_padding(k))
        self.norm1, self.norm2 = _norm(channels, batch_norm), _norm(channels, batch_norm)
        self.drop = _drop(dropout)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.relu(self.norm1(self.conv1(x))))
        return x + self.scale * self.norm2(self.conv2(y))


class ResNet(FixedLengthWrapper):
    """The paper's ResNet baseline: 15 residual blocks of 512 channels, kernel 7, scale 0.1."""

    def __init__(self, channels: int = 512, blocks: int = 15, kernel_size: int = 7,
                 residual_scale: float = 0.1, batch_norm: bool = False, dropout: float = 0.0,
                 global_residual: bool = True, init: str = "default",
                 zero_init_output: bool = True):
        super().__init__()
        self.multiple = 1
        self.global_residual = global_residual
        self.head = nn.Conv1d(1, channels, kernel_size, padding=same_padding(kernel_size))
        self.body = nn.Sequential(*[_ResBlock(channels, kernel_size, residual_scale, batch_norm,
                                              dropout) for _ in range(blocks)])
        self.tail = nn.Conv1d(channels, 1, kernel_size, padding=same_padding(kernel_size))
        init_weights(self, init)
        if zero_init_output and global_residual:
            zero_output(self.tail)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))
