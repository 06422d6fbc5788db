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
