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

``APBWE``: AP-BWE's generator (Lu et al., 2024) at its published 48 kHz configuration
(``config_16kto48k.json``: STFT n_fft 1024, hop 80, window 320; ConvNeXt width 512, 8 layers):
a log-amplitude and a phase stream over the STFT frames, each a kernel-7 input conv and layer
norm, then 8 pairs of ConvNeXt blocks (depthwise kernel-7 conv, layer norm, 3x pointwise MLP
with GELU, layer scale) with each stream added into the other before every pair, then layer
norm and linear heads (amplitude residual; phase from atan2 of two heads); the waveform comes
back by inverse STFT. 29.7 M parameters (the paper: 29.8 M). Offline, non-causal.

``HiFiGANPlus``: hifi-gan-bwe's generator (Su et al., 2021, "HiFi-GAN+"; PyPI ``hifi-gan-bwe``
0.1.14, ``models.BandwidthExtender``), rebuilt because that package imports ``torchaudio``: a
non-causal WaveNet at 48 kHz, a 1x1 input conv to 128 channels, 2 stacks of 8 gated residual
layers (kernel-3 conv with dilation 3^i and "same" padding, tanh x sigmoid gate on the two
halves, 1x1 skip and output convs, residual scaled by sqrt(0.5)), the skips summed and scaled
by sqrt(1/16), a 1x1 output conv and tanh; the input is zero-padded by half the receptive
field (13,120 samples) on each side. 1.06 M parameters, as the package. It first resamples its
input to 48 kHz (torchaudio's Kaiser sinc); here the input is already at 48 kHz, so that step
is left out. Offline, non-causal.

Shapes: ``forward(x)``: x (batch, 1, samples) -> (batch, 1, samples); SEANetBWE needs
samples a multiple of 256.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (2, 2, 8, 8)
DILATIONS = (1, 3, 9)


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only: output ``t`` sees inputs ``<= t`` (times the stride).

    Streaming (``streaming = True``): the left padding is the previous call's last input
    samples instead of zeros, so chunks (multiples of the stride) give the offline output."""

    streaming = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = max(self.dilation[0] * (self.kernel_size[0] - 1) - (self.stride[0] - 1), 0)
        if not self.streaming:
            return super().forward(F.pad(x, (left, 0)))
        state = getattr(self, "state", None)
        if state is None or state.shape[0] != x.shape[0]:
            state = x.new_zeros(x.shape[0], x.shape[1], left)
        joined = torch.cat([state, x], dim=-1)
        self.state = joined[..., joined.shape[-1] - left:]
        return super().forward(joined)


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv with the look-ahead part of its output trimmed (causal).

    Streaming: the trimmed tail (kernel - stride samples, without bias) is kept and added to
    the next call's head, as the offline output would have it."""

    streaming = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        keep = x.shape[-1] * self.stride[0]
        if not self.streaming:
            return out[..., :keep]
        tail = getattr(self, "tail", None)
        if tail is not None and tail.shape[0] == x.shape[0]:
            out[..., :tail.shape[-1]] += tail
        self.tail = out[..., keep:] - self.bias[:, None]
        return out[..., :keep]


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

    def stream(self, on: bool = True) -> None:
        """Streaming mode: every call continues the last (chunks a multiple of 256 samples);
        ``stream(False)`` returns to offline and drops the state."""
        for module in self.modules():
            if isinstance(module, (CausalConv1d, CausalConvTranspose1d)):
                module.streaming = on
                module.state = module.tail = None

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


class ConvNeXt1d(nn.Module):
    """x (batch, dim, frames) -> same: depthwise conv, layer norm, 3x MLP, layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.expand = nn.Linear(dim, 3 * dim)
        self.project = nn.Linear(3 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.depthwise(x).transpose(1, 2))
        h = self.scale * self.project(F.gelu(self.expand(h)))
        return x + h.transpose(1, 2)


class APBWE(nn.Module):
    def __init__(self, n_fft: int = 1024, hop: int = 80, window: int = 320, width: int = 512,
                 layers: int = 8):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(window), persistent=False)
        bins = n_fft // 2 + 1
        self.pre = nn.ModuleList(nn.Conv1d(bins, width, 7, padding=3) for _ in range(2))
        self.pre_norm = nn.ModuleList(nn.LayerNorm(width, eps=1e-6) for _ in range(2))
        self.amp_blocks = nn.ModuleList(ConvNeXt1d(width, 1 / layers) for _ in range(layers))
        self.pha_blocks = nn.ModuleList(ConvNeXt1d(width, 1 / layers) for _ in range(layers))
        self.post_norm = nn.ModuleList(nn.LayerNorm(width, eps=1e-6) for _ in range(2))
        self.amp_head = nn.Linear(width, bins)
        self.pha_real, self.pha_imag = nn.Linear(width, bins), nn.Linear(width, bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        samples = x.shape[-1]
        spec = torch.stft(x[:, 0], self.n_fft, self.hop, self.window.shape[0], self.window,
                          return_complex=True)
        log_amp, phase = torch.log(spec.abs().clamp_min(1e-5)), spec.angle()
        streams = []
        for conv, norm, inp in zip(self.pre, self.pre_norm, (log_amp, phase)):
            streams.append(norm(conv(inp).transpose(1, 2)).transpose(1, 2))
        a, p = streams
        for amp_block, pha_block in zip(self.amp_blocks, self.pha_blocks):
            a = a + p
            p = p + a
            a, p = amp_block(a), pha_block(p)
        a = self.post_norm[0](a.transpose(1, 2))
        p = self.post_norm[1](p.transpose(1, 2))
        amp = log_amp + self.amp_head(a).transpose(1, 2)
        pha = torch.atan2(self.pha_imag(p), self.pha_real(p)).transpose(1, 2)
        out = torch.polar(torch.exp(amp), pha)
        return torch.istft(out, self.n_fft, self.hop, self.window.shape[0], self.window,
                           length=samples)[:, None]


class GatedLayer(nn.Module):
    """x (batch, channels, samples) -> (residual out, skip), both the same shape."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding="same", dilation=dilation)
        self.skip = nn.Conv1d(channels // 2, channels, 1)
        self.out = nn.Conv1d(channels // 2, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, gate = self.conv(x).chunk(2, dim=1)
        h = torch.tanh(h) * torch.sigmoid(gate)
        return (self.out(h) + x) * 0.5 ** 0.5, self.skip(h)


class HiFiGANPlus(nn.Module):
    def __init__(self, channels: int = 128, stacks: int = 2, layers: int = 8):
        super().__init__()
        self.inp = nn.Conv1d(1, channels, 1)
        self.layers = nn.ModuleList(GatedLayer(channels, 3 ** i)
                                    for _ in range(stacks) for i in range(layers))
        self.out = nn.Conv1d(channels, 1, 1)
        self.receptive_field = 2 * stacks * sum(3 ** i for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.receptive_field // 2
        h = self.inp(F.pad(x, (pad, pad)))
        skips = 0
        for layer in self.layers:
            h, skip = layer(h)
            skips = skips + skip
        return torch.tanh(self.out(skips * (1 / len(self.layers)) ** 0.5))[..., pad:-pad]
