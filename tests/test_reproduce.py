"""`rtbwe-train reproduce`: the whole pipeline on a tiny folder corpus, resume, and refusals."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from rtbwe import models
from rtbwe.training import report, reproduce
from rtbwe.training.cli import main

SR = 48000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Ten 2 s files of bright, noisy square waves: 8 train, 1 validation, 1 test."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    for i in range(10):
        x = 0.3 * np.sign(np.sin(2 * np.pi * 220 * (i + 1) * t))
        x += 0.02 * rng.standard_normal(len(t))
        sf.write(folder / f"piece{i}.flac", x.astype(np.float32), SR, subtype="PCM_24")
    return folder


@pytest.fixture(scope="module")
def smoke_run(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    argv = ["reproduce", "--smoke", "--data", str(corpus), "--run-dir", str(root / "runs"),
            "--out-dir", str(root / "docs")]
    assert main(argv) == 0
    return root, argv


def test_smoke_pipeline_writes_report_figures_and_csv(smoke_run):
    root, _ = smoke_run
    md = (root / "docs" / "reproduction.md").read_text()
    for system in reproduce.BASE_SYSTEMS:
        assert f"| {system.label} | seen (Chebyshev-1 6) |" in md, system.label
        assert f"| {system.label} | unseen (Butterworth 6) |" in md, system.label
    assert "not run" not in md
    assert "+11.96" in md and "+4.68" in md and report.NOT_FOUND in md
    assert "No VGG column" in md and "--vggish-weights" in md
    assert "width scale 1/64" in md and "CPU (" in md
    assert "reproduction-fig2.png" in md and "reproduction-fig3.png" in md

    from matplotlib import image
    fig2 = image.imread(root / "docs" / "figures" / "reproduction-fig2.png")
    fig3 = image.imread(root / "docs" / "figures" / "reproduction-fig3.png")
    assert fig2.shape[0] > 100
    assert fig3.shape[0] == 2 * 340 and fig3.shape[1] == 4 * 320  # 2 filters x 4 panels
    assert not list((root / "docs" / "figures").glob("*.tmp.png"))

    rows = list(csv.DictReader(open(root / "docs" / "reproduction-results.csv")))
    assert len(rows) == 2 * len(reproduce.BASE_SYSTEMS)
    by = {(r["system"], r["filter"]): r for r in rows}
    for f in ("seen", "unseen"):
        assert float(by[("Input", f)]["dsnr"]) == 0.0  # the input row is the low-passed input
        assert np.isfinite(float(by[("ARUNet", f)]["snr"]))
        assert by[("ARUNet", f)]["steps"] == "2" and by[("ARUNet", f)]["width_scale"] == "64.0"
        assert by[("U-Net DA", f)]["augment"] == "True"
        assert by[("U-Net BN", f)]["augment"] == "False"
    assert by[("ARUNet", "seen")]["paper_dsnr"] == "11.96"
    assert by[("ResNet", "seen")]["paper_dsnr"] == ""

    info = json.loads((root / "runs" / "unet-bn" / "trained.json").read_text())
    assert info["model_kwargs"]["filters"] == [2, 4, 8, 8] and info["device"] == "cpu"


def test_rerun_keeps_finished_systems(smoke_run, capsys):
    root, argv = smoke_run
    stamp = (root / "runs" / "arunet" / "result.json").stat().st_mtime_ns
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, kept") == len(reproduce.BASE_SYSTEMS)
    assert (root / "runs" / "arunet" / "result.json").stat().st_mtime_ns == stamp


def test_refuses_a_run_dir_trained_at_another_width(smoke_run, capsys):
    root, argv = smoke_run
    assert main(argv + ["--systems", "resnet", "--width-scale", "32", "--budget-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "trained with other options" in err and "model_kwargs" in err and "--run-dir" in err


def test_interrupted_training_resumes(corpus, tmp_path, monkeypatch, capsys):
    argv = ["reproduce", "--smoke", "--data", str(corpus), "--run-dir", str(tmp_path / "runs"),
            "--out-dir", str(tmp_path / "docs"), "--systems", "unet", "--budget-steps", "3"]
    real_train = reproduce.Trainer.train

    def train_then_ctrl_c(self, resume=True):  # a Ctrl-C arriving during the first step
        original = self.sampler.batch

        def batch(n):
            self._stop = True
            return original(n)
        self.sampler.batch = batch
        return real_train(self, resume)

    monkeypatch.setattr(reproduce.Trainer, "train", train_then_ctrl_c)
    assert main(argv) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "unet" / "result.json").exists()
    monkeypatch.setattr(reproduce.Trainer, "train", real_train)
    assert main(argv) == 0
    assert "resumed from" in capsys.readouterr().out
    result = json.loads((tmp_path / "runs" / "unet" / "result.json").read_text())
    assert result["train"]["steps"] == 3
    md = (tmp_path / "docs" / "reproduction.md").read_text()
    assert md.count("not run") >= 8  # the other systems are listed as missing, not invented


def test_width_scale_keeps_topology():
    kw = reproduce.scaled_model_kwargs("arunet", 8)
    assert kw == {"filters": [16, 32, 64, 64, 64], "bottleneck_filters": 64}
    assert reproduce.scaled_model_kwargs("resnet-bn", 8) == {"channels": 64}
    assert reproduce.scaled_model_kwargs("unet", 1) == {}
    net = models.build("unet-do", **reproduce.scaled_model_kwargs("unet-do", 16))
    assert [d.conv.kernel_size[0] for d in net.downs] == [65, 33, 17, 9]
    assert net.downs[0].drop.p == 0.5
    odd = reproduce.scaled_model_kwargs("arunet", 48)  # 256/48 would round to an odd 5
    assert all(w % 2 == 0 for w in odd["filters"]) and odd["bottleneck_filters"] % 2 == 0
    assert models.build("arunet", **odd)(torch.zeros(1, 1, 256)).shape == (1, 1, 256)
    with pytest.raises(reproduce.ReproduceError, match="width-scale"):
        reproduce.scaled_model_kwargs("unet", 0.5)


def test_budget_parsing_and_missing_budget(tmp_path):
    assert reproduce.parse_budget("2000") == ("steps", 2000)
    assert reproduce.parse_budget("45min") == ("seconds", 2700)
    assert reproduce.parse_budget("2h") == ("seconds", 7200)
    with pytest.raises(reproduce.ReproduceError, match="2000steps"):
        reproduce.parse_budget("two hours")
    with pytest.raises(reproduce.ReproduceError, match="exactly one budget"):
        reproduce.reproduce(reproduce.ReproduceSettings(run_dir=str(tmp_path)), log=lambda s: None)


def test_template_report_has_paper_numbers_and_no_results(tmp_path):
    settings = reproduce.ReproduceSettings(run_dir=str(tmp_path / "none"), out_dir=str(tmp_path))
    md = reproduce.reproduce(settings, log=lambda s: None, report_only=True).read_text()
    assert "No system has been trained yet" in md
    assert md.count("| not run |") >= 9 * 2
    assert "+11.96" in md and "+4.68" in md


def _record(label, seen_dsnr, unseen_dsnr, vgg=None):
    rows = {f: {"snr": 10 + d, "dsnr": d, "lsd": 1.0, "clips": 3, "filter": f}
            for f, d in (("seen", seen_dsnr), ("unseen", unseen_dsnr))}
    if vgg is not None:
        for row in rows.values():
            row["vgg"] = vgg
    return {"label": label, "slug": label.lower(), "model": label.lower(), "augment": True,
            "test": rows, "train": None}


def test_discussion_reads_the_numbers():
    facts = {"data_note": "d.", "cutoff_hz": 6000.0, "budget": "10 steps", "size": "s.",
             "eval": "e."}
    won = report.discussion([_record("U-Net", 3.0, 1.0), _record("ARUNet", 5.0, 0.5)], facts)
    assert "(U-Net) +3.00 dB: so this run reproduces" in won
    assert "(U-Net) +1.00 dB: so this run does not reproduce" in won
    assert "Every trained system lowers" not in won
    lower = report.discussion([_record("U-Net", 3.0, -1.0), _record("ARUNet", 5.0, -0.5)], facts)
    assert "Every trained system lowers the SNR on the unseen filter" in lower
    like = report.discussion([_record("U-Net DA", 2.0, 1.0), _record("ResNet DA", 1.0, 0.0),
                              _record("ARUNet", 1.5, 0.5)], facts)
    assert ("Like for like (every system trained with DA), seen (Chebyshev-1 6): ARUNet +1.50 dB, "
            "U-Net DA +2.00 dB, ResNet DA +1.00 dB.") in like
    tie = report.discussion([_record("U-Net", 3.0, 1.0), _record("ARUNet", 3.05, 1.0)], facts)
    assert tie.count("neither confirms nor refutes") == 2


def test_vgg_column_appears_only_with_vgg_numbers():
    with_vgg = report.table_ii([_record("ARUNet", 1.0, 1.0, vgg=0.25)])
    assert "VGG dist." in with_vgg.splitlines()[0] and "0.250" in with_vgg
    assert "VGG" not in report.table_ii([_record("ARUNet", 1.0, 1.0)])


def test_budget_check_compares_two_run_dirs():
    small = [_record("U-Net", 3.0, 1.0), _record("ResNet", 1.0, 2.0), _record("ARUNet", 2.0, 0.5)]
    large = [_record("U-Net", 4.0, 1.5), _record("ResNet", 5.0, 1.0), _record("ARUNet", 6.0, 2.5)]
    md = report.budget_check(large, small)
    assert "| ARUNet | ? | +2.00 | +0.50 | ? | +6.00 | +2.50 |" in md
    assert ("seen (Chebyshev-1 6): best U-Net with the smaller budget, ARUNet with this one; "
            "0 of 3 systems keep their rank.") in md
    assert "unseen (Butterworth 6): best ResNet with the smaller budget, ARUNet with this one" in md
    assert report.budget_check(large, []) == "No system was tested in both run dirs."


def test_report_with_compare_run_dir(smoke_run, tmp_path):
    root, argv = smoke_run
    assert main(argv + ["--report-only", "--compare-run-dir", str(root / "runs"),
                        "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "reproduction.md").read_text()
    assert f"## Budget check: this run against `{root / 'runs'}`" in md
    assert "| ARUNet | 2 |" in md and "of 9 systems keep their rank" in md
    assert main(argv + ["--report-only", "--compare-run-dir", str(tmp_path / "nowhere"),
                        "--out-dir", str(tmp_path)]) == 2
