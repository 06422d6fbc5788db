"""Keep the input's passband: let the network change only the band above ``keep_below_hz``.

A bandwidth extender adds a high band, but a network trained on the paper's Table I filters
also equalises the passband: it undoes the 0.1 dB ripple of Chebyshev-1 and elliptic filters
and the droop of Bessel ones. On input whose passband is flat (Butterworth, most codecs and
resamplers) that equalisation is an error (-41 dB at 0-3 kHz for the shipped model; see
docs/training.md). With a passband lock the output is

    output = input + highpass(network(input) - input)

so below ``keep_below_hz`` the output is the input (to within the FIR's stopband; tones
below it come back within -60 dB in tests/test_passband.py)
and above it the network's high band is added. The high-pass is a linear-phase (zero-phase
when centred) Kaiser FIR, applied per analysis window like the network itself, so the lock
adds no latency. It is one conv1d, so every engine backend runs it (eager and TorchScript are
tested; CUDA graphs capture it like any other op but are untested here, without a GPU).

Two ways to use it:

* ``BandwidthExtender(..., keep_below_hz=4500)`` wraps any model (:class:`PassbandLock`);
* ``ARUNet(..., keep_below_hz=4500)`` builds it into the network, so that it is trained
  with the lock and its model card says so.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy import signal
from torch import nn

from .conditioning import condition_bands

DEFAULT_TAPS = 255  # about 0.5 kHz transition at 48 kHz with Kaiser beta 8 (-80 dB stopband)
KAISER_BETA = 8.0


def highpass_taps(sample_rate: int, keep_below_hz: float, taps: int = DEFAULT_TAPS
                  ) -> np.ndarray:
    """Linear-phase high-pass FIR (taps,) float64 with its -6 dB point at ``keep_below_hz``."""
    if taps % 2 == 0 or taps < 3:
        raise ValueError(f"taps must be odd and >= 3 (a zero-phase FIR), got {taps}")
    nyquist_hz = sample_rate / 2
    if not 0 < keep_below_hz < nyquist_hz:
        raise ValueError(f"keep_below_hz={keep_below_hz} must be between 0 and the Nyquist "
                         f"frequency {nyquist_hz} Hz of sample_rate={sample_rate}")
    return signal.firwin(taps, keep_below_hz, fs=sample_rate, pass_zero=False,
                         window=("kaiser", KAISER_BETA))


class ResidualHighpass(nn.Module):
    """Zero-phase FIR high-pass of (batch, 1, samples) -> (batch, 1, samples), same length.

    The taps are a non-persistent buffer: they are rebuilt from ``keep_below_hz`` and
    ``sample_rate`` (which model cards store as constructor kwargs), never saved as weights,
    so a state dict with and without the lock is the same.
    """

    def __init__(self, sample_rate: int, keep_below_hz: float, taps: int = DEFAULT_TAPS):
        super().__init__()
        self.sample_rate, self.keep_below_hz = int(sample_rate), float(keep_below_hz)
        h = highpass_taps(self.sample_rate, self.keep_below_hz, taps)
        # conv1d is a correlation; the taps are symmetric, so no flip is needed
        self.register_buffer("taps", torch.tensor(h, dtype=torch.float32)[None, None],
                             persistent=False)
        self.padding = taps // 2

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv1d(residual, self.taps, padding=self.padding)


class PassbandLock(nn.Module):
    """``model`` whose output equals its input below ``keep_below_hz``.

    (batch, 1, samples) -> (batch, 1, samples). Keeps the wrapped model's ``card`` (if any)
    with ``keep_below_hz`` added, so processors still find the sample rate.
    """

    def __init__(self, model: nn.Module, sample_rate: int, keep_below_hz: float,
                 taps: int = DEFAULT_TAPS):
        super().__init__()
        self.model = model
        self.highpass = ResidualHighpass(sample_rate, keep_below_hz, taps)
        card = getattr(model, "card", None)
        if isinstance(card, dict):
            self.card = {**card, "keep_below_hz": float(keep_below_hz)}
        self.condition_bands = condition_bands(model)

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (batch, 1, samples), and a condition (batch, bands) if the model takes one."""
        y = self.model(x) if condition is None else self.model(x, condition)
        return x + self.highpass(y - x)
