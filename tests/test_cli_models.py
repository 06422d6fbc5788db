"""``rtbwe models`` and ``rtbwe bench``: fast, and about what users run."""
from __future__ import annotations

import pytest

from rtbwe import benchmarking, cli, cli_models, models


@pytest.mark.parametrize("name", ["tiny", "tiny-cond", "arunet-small"])
def test_network_cost_equals_the_measured_receptive_field_and_macs(name):
    cost = cli_models.network_cost(name)
    net = models.build(name)
    assert cost["receptive_field_samples"] == models.receptive_field(net)
    assert cost["gmacs_per_second"] == pytest.approx(models.macs_per_second(net) / 1e9, rel=1e-9)
    assert cost["parameters"] == models.count_parameters(net)


def test_models_lists_shipped_cards_and_no_test_networks_without_running_a_network(
        capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("rtbwe models must not run a network on real data")

    monkeypatch.setattr(models, "receptive_field", refuse)
    monkeypatch.setattr(models, "macs_per_second", refuse)
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("default = default-template-fit", "fast = arunet-small-half-wide-spectral",
                 "arunet-small-wide",
                 "arunet-small-cond-6k", "arunet-small-6k",
                 "ΔSNR +6.47", "band-limited anywhere from 3 to 16 kHz",
                 "2.3 MB", "arunet ", "resnet-do", "3522"):  # 3522: docs/models.md
        assert name in out
    assert "tiny" not in out
    assert cli.main(["models", "--all"]) == 0
    assert "tiny-cond" in capsys.readouterr().out


def test_bench_times_the_shipped_default_model_by_default(monkeypatch, capsys):
    built = []
    original = benchmarking.build_extender
    monkeypatch.setattr(benchmarking, "build_extender",
                        lambda model, *a, **k: built.append(model) or original(model, *a, **k))
    monkeypatch.setattr(benchmarking, "time_kernels", lambda **k: {
        "numba_us": 1.0, "numpy_us": 1.0, "speedup": 1.0})
    assert cli.main(["bench", "--backends", "eager", "--threads", "1", "--seconds", "0.1"]) == 0
    assert built == ["default"]
    out = capsys.readouterr().out
    assert ("default: shipped weights default-template-fit, conditioned on the "
            "long-term") in out
