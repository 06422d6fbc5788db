"""Helpers shared by the test modules (imported as ``from helpers import ...``)."""
import torch
from torch import nn

from rtbwe import models


def random_tiny(seed: int = 0) -> nn.Module:
    """The tiny ARUNet with every layer random, including the output conv (which the
    registry may zero-initialise so that untrained nets start as the identity)."""
    torch.manual_seed(seed)
    net = models.build("tiny").eval()
    nn.init.normal_(net.out.weight, std=0.2)
    nn.init.normal_(net.out.bias, std=0.05)
    return net


def stream_in_random_blocks(bwe, x, sample_rate: int, max_block: int = 3000, seed: int = 0):
    """``x`` (samples,) or (channels, samples) through ``bwe.process(..., reset=False)`` in
    blocks of random sizes 1..max_block -> the concatenated stream, the same shape, delayed by
    ``bwe.latency_samples``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    parts, at = [], 0
    while at < x.shape[-1]:
        n = int(rng.integers(1, max_block))
        parts.append(bwe.process(x[..., at:at + n], sample_rate, reset=False))
        at += n
    return np.concatenate(parts, axis=-1)
