"""``rtbwe process --ray``: restoring a folder on a local Ray instance (rtbwe/batch.py)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from rtbwe import cli

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'rtbwe[cluster]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (rate, channels) in enumerate([(48000, 1), (16000, 2), (44100, 1), (8000, 1)]):
        x = 0.2 * rng.standard_normal((int(rate * 0.4), channels)).astype(np.float32)
        sf.write(folder / f"take{i}.flac" if i % 2 else folder / f"take{i}.wav", x, rate)
    (folder / "broken.flac").write_bytes(b"fLaC" + bytes(200))  # fails; the rest goes on
    return folder


def test_a_folder_on_ray_equals_rtbwe_process_bit_for_bit_and_resumes(tmp_path, local_ray,
                                                                     capsys):
    folder, out = _folder(tmp_path), tmp_path / "out"
    out.mkdir()
    assert cli.main(["process", str(folder), str(out), "--ray", "auto", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "4 of 5 files written on Ray; failed: " in captured.out
    assert "broken.flac" in captured.err and "rtbwe process: error:" in captured.err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["take0.wav", "take1.wav", "take2.wav", "take3.wav"]  # no temp files
    for name in written:
        source = next(folder.glob(name[:-4] + ".*"))
        reference = tmp_path / f"ref-{name}"
        assert cli.main(["process", str(source), str(reference), "--quiet"]) == 0
        assert (out / name).read_bytes() == reference.read_bytes(), name
    # resumable: finished outputs are skipped, only the failed file is tried again
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert cli.main(["process", str(folder), str(out), "--ray", "auto", "--skip-existing",
                     "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("exists: skipped") == 4
    assert "0 of 1 files written on Ray" in captured.out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # and without --skip-existing or -y nothing is started, as with the local CLI
    assert cli.main(["process", str(folder), str(out), "--ray", "auto"]) == 1
    assert "output exists" in capsys.readouterr().err


def test_actor_pool_uses_the_clusters_gpus_else_its_cpus(monkeypatch):
    from rtbwe import batch
    from rtbwe.cli_files import CliError

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    assert batch.actor_resources("auto", 1) == (2, {"num_gpus": 1, "num_cpus": 1}, "cuda")
    assert batch.actor_resources("cuda:1", 1)[2] == "cuda"  # Ray hands each actor one GPU
    assert batch.actor_resources("cpu", 2) == (8, {"num_cpus": 2}, "cpu")
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 5.0})
    assert batch.actor_resources("auto", 2) == (2, {"num_cpus": 2}, "auto")
    with pytest.raises(CliError, match="no GPU"):
        batch.actor_resources("cuda", 1)
