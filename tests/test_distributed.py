"""DDP training under torchrun's environment (training/distributed.py): 2 ranks in lockstep."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rtbwe.training import config as config_mod
from rtbwe.training import distributed
from rtbwe.training.cli import main as train_main
from rtbwe.training.trainer import Trainer
from test_training import _smoke_config, _write_tones

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _launch(world_size: int, argv: list[str], record: Path, timeout_s: float = 120) -> list[str]:
    """Start ``world_size`` ranks of tests/ddp_worker.py as torchrun would; their stdouts."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKER), *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, **_rank_env(r, world_size, port),
                                   "OMP_NUM_THREADS": "1", "DDP_RECORD": str(record)})
             for r in range(world_size)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout_s)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    return outs


def _config(tmp_path: Path, steps: int, device: str) -> Path:
    cfg = _smoke_config(_write_tones(tmp_path / "f"), steps).replace(
        device=device, checkpoint_every=2, val_every=2)
    path = tmp_path / "c.toml"
    path.write_text(config_mod.dump_toml(cfg))
    return path


def test_rank_info_and_seeds():
    assert distributed.RankInfo.from_env({}) is None
    info = distributed.RankInfo.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1)
    with pytest.raises(ValueError, match="outside"):
        distributed.RankInfo.from_env({"RANK": "2", "WORLD_SIZE": "2"})
    assert distributed.rank_seed(7, 0) == 7  # one process draws what the plain trainer draws
    seeds = {distributed.rank_seed(7, r, s) for r in range(4) for s in (0, 10)}
    assert len(seeds) == 8


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        torch.cuda.device_count() < 2, reason="NCCL needs 2 GPUs for 2 ranks")])])
def test_two_ranks_stay_identical_and_resume_across_world_sizes(tmp_path, monkeypatch, device):
    config, run = _config(tmp_path, 2, device), tmp_path / "run"
    # 1 process under torchrun's variables (a process group of one), 2 steps
    monkeypatch.setenv("DDP_RECORD", str(tmp_path))
    for key, value in _rank_env(0, 1, _free_port()).items():
        monkeypatch.setenv(key, value)
    assert train_main(["fit", str(config), "--run-dir", str(run)]) == 0
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key)
    # 2 ranks resume it; only rank 1 is told to stop after step 4: both stop there
    monkeypatch.setenv("DDP_STOP_AFTER", "1:4")
    outs = _launch(2, ["fit", str(config), "--run-dir", str(run), "--steps", "6"], tmp_path)
    assert "stopped at step 4; resume with --resume" in outs[0]
    assert "resumed from" in outs[0] and "at step 2 on 2 processes (saved by 1: the global " \
        "batch changes from 2 to 4)" in outs[0]
    assert "global batch 4 = 2 x 2" in outs[0] and outs[1].strip() == ""  # rank 0 logs alone
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]] == [3, 4]
    for a, b in zip(*ranks):
        assert a["weights"] == b["weights"], f"ranks differ after step {a['step']}"
        assert a["sampler"] != b["sampler"]  # each rank draws its own segments
    assert len({r["weights"] for r in ranks[0]}) == 2  # and the weights did move
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows if ",train," in r] == [1, 2, 3, 4]
    card = json.loads((run / "best.json").read_text())["distributed"]  # from step 2 or 4
    assert card["global_batch"] == 2 * card["world_size"] and "cosine" in card["lr_schedule"]
    # back to one plain process: continues from step 4 with rank 0's weights and stream
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and len(state["rank_samplers"]) == 2
    assert state["history"] == [[0, 1], [2, 2]]  # [first step, world size]
    plain = Trainer(config_mod.load_config(config, steps=5), run, log=lambda s: None)
    assert plain.load_checkpoint() and plain.step == 4
    assert plain.sampler.state() == state["rank_samplers"][0]
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value.cpu(), state["model"][name].cpu()), name
