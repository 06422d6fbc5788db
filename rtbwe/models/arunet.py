"""ARUNet: the waveform U-Net with residual blocks from "Acoustic Bandwidth Extension by
Audio Deep Residual U-Net", with the widths and kernel lengths of Kuleshov's AudioUNet.

Data flow for an input of ``L`` samples (``L`` padded to a multiple of 64)::

    x (B,1,L) ─ enc1 ─ enc2 ─ enc3 ─ enc4 ─ enc5 ─ bottleneck ─ dec5 ─ dec4 ─ dec3 ─ dec2 ─ dec1 ─ out ─(+x)
      L/2      L/4    L/8    L/16   L/32   L/64→L/32  L/16   L/8    L/4    L/2    L

    encoder block:  F(x) = BN(LReLU(Conv_stride2(x)));  E = R(F) + F,  R = BN(LReLU(Conv(F)))
    decoder block:  D = LReLU(Dropout(Conv(cat[up, skip])));  D = R(D) + D;  PixelShuffle x2

Choices where the paper is unclear (see docs/models.md):

* Decoder conv widths equal the matching encoder width ``F_k``; the pixel shuffle halves
  the channels, so the block hands ``F_k / 2`` channels to the next level.
* Init is PyTorch's default Kaiming-uniform; the paper's literal N(0, 1) makes the
  activations explode (measured in ``tests/test_models.py``) and is kept as ``init="normal"``.
* Dropout 0.5 in the decoder and bottleneck, as in Kuleshov.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..conditioning import NUM_BANDS
from .layers import (LEAKY_SLOPE, ConvAct, FiLM, FixedLengthWrapper, PixelShuffle1d, Residual,
                     init_weights, modulate, required_multiple, same_padding, zero_output)

PAPER_FILTERS = tuple(min(2 ** (6 + k), 512) for k in range(1, 6))  # 128, 256, 512, 512, 512
PAPER_KERNELS = tuple(max(2 ** (7 - k) + 1, 9) for k in range(1, 6))  # 65, 33, 17, 9, 9


class EncoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, batch_norm: bool):
        super().__init__()
        self.down = ConvAct(in_channels, out_channels, kernel_size, 2, batch_norm)
        self.res = Residual(out_channels, kernel_size, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.down(x))


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, kernel_size: int, batch_norm: bool,
                 dropout: float):
        super().__init__()
        if channels % 2:
            raise ValueError(f"decoder widths must be even for the x2 pixel shuffle, got {channels}")
        self.conv = nn.Conv1d(in_channels, channels, kernel_size, padding=same_padding(kernel_size))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.res = Residual(channels, kernel_size, batch_norm)
        self.up = PixelShuffle1d(2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, skip], dim=1)
        x = F.leaky_relu(self.drop(self.conv(x)), LEAKY_SLOPE)
        return self.up(self.res(x))


class ARUNet(FixedLengthWrapper):
    """ARUNet mapping (batch, 1, samples) -> (batch, 1, samples) for any ``samples``.

    Args:
        filters: encoder widths per level (the paper: 128, 256, 512, 512, 512).
        kernel_sizes: odd kernel lengths per level (the paper: 65, 33, 17, 9, 9).
        bottleneck_filters: width of the bottleneck conv.
        bottleneck_kernel: kernel length in the bottleneck.
        dropout: dropout probability in the decoder and bottleneck.
        batch_norm: BatchNorm in the encoder and residual blocks.
        global_residual: output = input + predicted high band (Kuleshov/Sulun convention).
        init: ``"default"``, ``"normal"`` (paper's literal N(0,1)) or ``"orthogonal"``.
        zero_init_output: zero the last conv so the network starts as the identity.
        keep_below_hz: lock the passband: the predicted residual is high-passed there, so the
            output equals the input below it (:mod:`rtbwe.passband`; needs the global
            residual). ``None`` (default) lets the network change every band.
        sample_rate: the rate ``keep_below_hz`` refers to.
    """

    def __init__(self, filters: Sequence[int] = PAPER_FILTERS,
                 kernel_sizes: Sequence[int] = PAPER_KERNELS, bottleneck_filters: int = 512,
                 bottleneck_kernel: int = 9, dropout: float = 0.5, batch_norm: bool = True,
                 global_residual: bool = True, init: str = "default",
                 zero_init_output: bool = True, keep_below_hz: float | None = None,
                 sample_rate: int = 48000):
        super().__init__()
        filters, kernel_sizes = list(filters), list(kernel_sizes)
        if len(filters) != len(kernel_sizes) or not filters:
            raise ValueError(f"filters and kernel_sizes need one entry per level, got "
                             f"{len(filters)} and {len(kernel_sizes)}")
        self.levels = len(filters)
        self.multiple = required_multiple(self.levels + 1)
        self.global_residual = global_residual

        self.encoders = nn.ModuleList()
        in_ch = 1
        for width, k in zip(filters, kernel_sizes):
            self.encoders.append(EncoderBlock(in_ch, width, k, batch_norm))
            in_ch = width

        self.bottleneck = nn.Sequential(
            ConvAct(in_ch, bottleneck_filters, bottleneck_kernel, 2, batch_norm=False,
                    dropout=dropout),
            ConvAct(bottleneck_filters, 2 * bottleneck_filters, bottleneck_kernel, 1,
                    batch_norm=False, dropout=dropout),
            PixelShuffle1d(2),
        )
        # channels after the bottleneck and after each decoder (ConditionedARUNet's FiLM sites)
        self.level_channels = [bottleneck_filters] + [width // 2 for width in reversed(filters)]
        self.decoders = nn.ModuleList(
            DecoderBlock(up_ch + width, width, k, batch_norm, dropout)
            for width, k, up_ch in zip(reversed(filters), reversed(kernel_sizes),
                                       self.level_channels))
        self.out = nn.Conv1d(self.level_channels[-1], 1, 9, padding=4)
        init_weights(self, init)
        if zero_init_output and global_residual:
            zero_output(self.out)
        if keep_below_hz is not None:
            if not global_residual:
                raise ValueError("keep_below_hz needs global_residual=True (it filters the "
                                 "predicted residual)")
            from ..passband import ResidualHighpass

            self.residual_filter = ResidualHighpass(sample_rate, keep_below_hz)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x, None)

    def unet(self, x: torch.Tensor, film: Optional[List[torch.Tensor]]) -> torch.Tensor:
        """The U-Net on (batch, 1, padded samples); ``film``: one (batch, 2, channels, 1)
        scale/shift pair for the bottleneck output and each decoder output, or None."""
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        x = self.bottleneck(x)
        if film is not None:
            x = modulate(x, film[0])
        for level, (dec, skip) in enumerate(zip(self.decoders, reversed(skips))):
            x = dec(x, skip)
            if film is not None:
                x = modulate(x, film[level + 1])
        return self.out(x)


class ConditionedARUNet(ARUNet):
    """ARUNet that also sees the input's long-term spectrum (:mod:`rtbwe.conditioning`).

    ``forward(x, condition)``: x (batch, 1, samples), condition (batch, condition_bands)
    -> (batch, 1, samples). A small MLP turns the condition into FiLM scales and shifts on
    the bottleneck and every decoder output; it starts at zero, so a conditioned net
    warm-started from an ARUNet's weights begins as that ARUNet.

    Args:
        condition_bands: length of the condition vector (``conditioning.NUM_BANDS``).
        film_hidden: width of the MLP's hidden layers.
        **kwargs: :class:`ARUNet`'s.
    """

    def __init__(self, condition_bands: int = NUM_BANDS, film_hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.condition_bands = int(condition_bands)
        self.film = FiLM(self.condition_bands, self.level_channels, film_hidden)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if condition.dim() != 2 or condition.shape[0] != x.shape[0] or \
                condition.shape[1] != self.condition_bands:
            raise ValueError(f"expected a condition of shape (batch={x.shape[0]}, "
                             f"{self.condition_bands}), got {tuple(condition.shape)}")
        return self.finish(x, self.unet(self.pad_input(x), self.film(condition)))


# arunet-small: the same topology, narrow enough to stream in real time on 2 CPU cores.
# Chosen by benchmarks/bench_models.py (see benchmarks/README.md).
SMALL_KWARGS = dict(filters=(16, 32, 32, 64, 64), kernel_sizes=(17, 9, 9, 9, 9),
                    bottleneck_filters=64, bottleneck_kernel=9, dropout=0.0)
