"""Models: any length in, same length out; gradients flow; sizes match the paper."""
import functools

import pytest
import torch

from rtbwe import models
from rtbwe.models.layers import pixel_shuffle_1d

SMALL_NAMES = ["arunet-small", "tiny"]
PAPER_NAMES = ["arunet", "unet", "unet-bn", "unet-do", "resnet", "resnet-bn", "resnet-do"]


@functools.lru_cache(maxsize=None)
def _built(name):
    return models.build(name, zero_init_output=False).eval()


@pytest.mark.parametrize("name", SMALL_NAMES + PAPER_NAMES)
def test_any_length_same_shape(name):
    net = _built(name)
    lengths = (1, 63, 300) if name.startswith("resnet") else (1, 63, 1001)
    for length in lengths:
        x = torch.randn(2, 1, length)
        with torch.inference_mode():
            y = net(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()
        assert not torch.equal(y, x)


@pytest.mark.parametrize("name", SMALL_NAMES + ["unet-bn", "resnet-do"])
def test_gradient_reaches_every_parameter(name):
    overrides = {"blocks": 2, "channels": 32} if name.startswith("resnet") else {}
    net = models.build(name, zero_init_output=False, **overrides).train()
    x = torch.randn(2, 1, 640)
    net(x).pow(2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient for {missing}"


def test_zero_init_output_starts_as_identity_and_still_learns():
    net = models.build("arunet-small").train()
    x = torch.randn(2, 1, 640)
    assert torch.equal(net(x), x)
    (net(x) - 2 * x).pow(2).mean().backward()
    assert net.out.weight.grad.abs().sum() > 0


def test_paper_sizes():
    counts = {n: models.count_parameters(_built(n)) for n in ("arunet", "unet", "resnet")}
    assert counts["arunet"] > 40e6  # "well over 20M"
    assert counts["unet"] > 20e6
    # ResNet: 15 blocks x 2 convs x 512 x 512 x 7 plus head and tail
    assert counts["resnet"] == 30 * (512 * 512 * 7 + 512) + 2 * (512 * 7) + 512 + 1
    assert models.count_parameters(models.build("arunet-small")) < 1e6


def test_arunet_widths_and_kernels_follow_kuleshov():
    net = _built("arunet")
    convs = [blk.down.conv for blk in net.encoders]
    assert [c.out_channels for c in convs] == [128, 256, 512, 512, 512]
    assert [c.kernel_size[0] for c in convs] == [65, 33, 17, 9, 9]
    assert net.multiple == 64


def test_global_residual_flag():
    net = models.build("tiny", global_residual=False).eval()
    x = torch.zeros(1, 1, 256)
    with torch.inference_mode():
        assert torch.allclose(net(x), net.core(x)[..., :256])


def test_pixel_shuffle_interleaves_channels():
    x = torch.arange(12.0).reshape(1, 4, 3)  # channels 0..3
    y = pixel_shuffle_1d(x, 2)
    assert y.shape == (1, 2, 6)
    assert y[0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    assert y[0, 1].tolist() == [6, 9, 7, 10, 8, 11]


def test_describe_reports_cost():
    info = models.describe(models.build("arunet-small"))
    assert 1000 < info["receptive_field_samples"] < 10000
    assert info["gmacs_per_second"] > 0.1
    small = models.macs_per_second(models.build("tiny"))
    assert small < models.macs_per_second(models.build("arunet-small"))


def test_receptive_field_of_a_known_stack():
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 5, padding=2), torch.nn.Conv1d(1, 1, 7, padding=3))
    assert models.receptive_field(net, probe_samples=256) == 5 + 7 - 1


def test_normal_init_explodes():
    """The paper's literal N(0, 1) init: measured, it blows the output up by orders of
    magnitude, which is why the default is PyTorch's Kaiming-uniform."""
    x = torch.randn(1, 1, 4096) * 0.1
    default = models.build("arunet-small", zero_init_output=False).eval()
    normal = models.build("arunet-small", init="normal", zero_init_output=False).eval()
    with torch.inference_mode():
        rms_default = (default(x) - x).pow(2).mean().sqrt()
        rms_normal = (normal(x) - x).pow(2).mean().sqrt()
    assert rms_normal > 100 * rms_default


def test_unknown_name_and_bad_input():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("nope")
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\)"):
        models.build("tiny")(torch.zeros(1, 2, 100))
