"""Training on several processes: PyTorch DistributedDataParallel under ``torchrun``.

::

    torchrun --nproc_per_node 4 -m rtbwe.training fit CONFIG            # 4 GPUs (or CPU procs)
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 --rdzv-id RUN -m rtbwe.training fit CONFIG

``rtbwe-train fit`` finds torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
builds a :class:`DistributedTrainer` instead of a :class:`~rtbwe.training.trainer.Trainer`
(:func:`make_trainer`). What changes with N processes:

* **Backend:** NCCL when the config's device resolves to CUDA (rank ``r`` on GPU
  ``LOCAL_RANK``), gloo on CPU.
* **Data:** every rank loads the same files and split (the config's seed), and draws its own
  segments from its own RNG stream: rank 0 keeps the config's seed (a 1-process run draws what
  the plain trainer draws), rank r > 0 uses :func:`rank_seed`.
* **Batch and schedule:** each rank draws ``batch_size`` segments per step, so the global batch
  is ``world_size x batch_size``; gradients are averaged over it (DDP), one optimizer step and
  one scheduler step per global batch. The learning rate is the config's, not scaled with the
  world size. Both are logged at the start and written in the model card (``distributed``).
  BatchNorm statistics are per rank (plain DDP; rank 0's running statistics are broadcast
  before each forward pass and are the ones saved).
* **Rank 0 only** validates, writes ``log.csv`` and the log, checkpoints and exports
  ``best.*``; the other ranks wait for it at the next step.
* **Stop:** SIGTERM / Ctrl-C on any rank stops every rank after the same step (the flag is
  all-reduced before each step), so the last checkpoint is consistent.
* **Resume:** ``checkpoint.pt`` holds the model, optimizer and scheduler once (they are the
  same on every rank) and every rank's sampler state. Rank 0 reads it and broadcasts it, so
  other nodes need no shared disk. Another world size resumes too: ranks that have a saved
  sampler state continue it, new ranks start a stream seeded by (seed, rank, step); the card
  lists each world size with the step it started at (``distributed.history``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .config import TrainConfig
from .trainer import Trainer, pick_device

# rank 0 validates alone while the others wait in a collective; this bounds that wait
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "RankInfo | None":
        """torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; None outside torchrun."""
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
        info = cls(int(environ["RANK"]), int(environ["WORLD_SIZE"]),
                   int(environ.get("LOCAL_RANK", environ["RANK"])))
        if not 0 <= info.rank < info.world_size:
            raise ValueError(f"RANK={info.rank} is outside WORLD_SIZE={info.world_size}")
        return info


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The segment RNG seed of ``rank``: the config's ``seed`` for rank 0 at step 0 (so one
    process draws what the plain trainer draws), an independent 32-bit seed otherwise."""
    if rank == 0 and step == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1)[0])


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


class DistributedTrainer(Trainer):
    """:class:`Trainer` on one rank of a DDP job; the process group must be initialised
    (:func:`make_trainer` does it). The module docstring lists what differs."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, info: RankInfo,
                 log: Callable[[str], None] = print):
        self.info = info
        super().__init__(config, run_dir, log=log if info.rank == 0 else (lambda s: None))
        self.backend = dist.get_backend()
        if info.rank:  # own segments: the sampler, and the wide prefetcher (seeded by cfg.seed)
            seed = rank_seed(config.seed, info.rank)
            self.sampler.set_state(np.random.default_rng(seed).bit_generator.state)
            self.cfg = self.cfg.replace(seed=seed)
            torch.manual_seed(seed)  # own dropout masks
        self.history = [[0, info.world_size]]  # [first step, world size] per launch
        self.rank_samplers: list[dict] | None = None
        self.forward_model = DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.log(self.recipe_line())

    # ---- what the run is -----------------------------------------------------------------
    def recipe(self) -> dict:
        """World size, backend, per-rank and global batch, the lr schedule; in the card."""
        cfg = self.cfg
        return {"world_size": self.info.world_size, "backend": self.backend,
                "batch_per_rank": cfg.batch_size,
                "global_batch": cfg.batch_size * self.info.world_size,
                "lr_schedule": f"AdamW lr {cfg.lr:g} (not scaled with the world size), cosine "
                f"annealing with warm restarts every {cfg.restart_steps} steps down to "
                f"{cfg.lr_min:g}; one step per global batch",
                "history": [list(h) for h in self.history]}

    def recipe_line(self) -> str:
        r = self.recipe()
        return (f"distributed: {r['world_size']} processes ({r['backend']}), global batch "
                f"{r['global_batch']} = {r['world_size']} x {r['batch_per_rank']} segments of "
                f"{self.cfg.segment_samples} samples; {r['lr_schedule']}")

    def card(self, val: dict[str, float]) -> dict:
        return {**super().card(val), "distributed": self.recipe()}

    # ---- rank 0 only ---------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        return super().validate() if self.info.rank == 0 else {}

    def _write_row(self, row: dict) -> None:
        if self.info.rank == 0:
            super()._write_row(row)

    # ---- collectives at the same step on every rank --------------------------------------
    def should_stop(self) -> bool:
        device = self.device if self.backend == "nccl" else torch.device("cpu")
        flag = torch.tensor([1.0 if self._stop else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self._stop = bool(flag.item())
        return self._stop

    def save_checkpoint(self) -> None:
        gathered = [None] * self.info.world_size if self.info.rank == 0 else None
        dist.gather_object(self.sampler.state(), gathered, dst=0)
        if self.info.rank == 0:
            self.rank_samplers = gathered
            super().save_checkpoint()

    def checkpoint_state(self) -> dict:
        return {**super().checkpoint_state(), "rank_samplers": self.rank_samplers,
                "world_size": self.info.world_size,
                "history": [list(h) for h in self.history]}

    def load_checkpoint(self) -> bool:
        box = [None]
        if self.info.rank == 0 and self.ckpt_path.exists():
            box[0] = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        dist.broadcast_object_list(box, src=0)
        state = box[0]
        if state is None:
            return False
        self.apply_checkpoint(state)
        saved = state.get("rank_samplers") or [state["sampler"]]
        if self.info.rank < len(saved):
            self.sampler.set_state(saved[self.info.rank])
        else:  # a rank the saved run did not have: a fresh stream of its own
            seed = rank_seed(self.cfg.seed, self.info.rank, self.step)
            self.sampler.set_state(np.random.default_rng(seed).bit_generator.state)
        if self.info.rank:
            torch.manual_seed(rank_seed(self.cfg.seed, self.info.rank, self.step))
        before = int(state.get("world_size", 1))
        self.history = [list(h) for h in state.get("history", [[0, before]])]
        if before != self.info.world_size:
            self.history.append([self.step, self.info.world_size])
        self.log(f"resumed from {self.ckpt_path} at step {self.step} on "
                 f"{self.info.world_size} processes" + (
                     f" (saved by {before}: the global batch changes from "
                     f"{before * self.cfg.batch_size} to "
                     f"{self.info.world_size * self.cfg.batch_size})"
                     if before != self.info.world_size else ""))
        return True

    def warm_start(self, card_path: str) -> None:
        """Rank 0 reads the card; its weights are broadcast (other nodes need not have it)."""
        if self.info.rank == 0:
            super().warm_start(card_path)
        for tensor in self.model.state_dict().values():
            dist.broadcast(tensor, src=0)


@contextmanager
def process_group(info: RankInfo, device_name: str) -> Iterator[torch.device]:
    """Initialise torch.distributed from torchrun's environment (NCCL for CUDA, else gloo);
    yields this rank's device and tears the group down on exit."""
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), rank=info.rank, world_size=info.world_size,
                            timeout=COLLECTIVE_TIMEOUT)
    try:
        yield device
        # Every rank's last collective (the final checkpoint's gather) has completed on all
        # ranks before any tears its group down: a rank that left while rank 0 was still
        # writing that checkpoint aborted now and then in gloo ("terminate called without an
        # active exception", exit -6). Not on an exception: the others may never get here.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@contextmanager
def make_trainer(config: TrainConfig, run_dir: str | Path,
                 log: Callable[[str], None] = print) -> Iterator[Trainer]:
    """A :class:`DistributedTrainer` under torchrun (any world size), else a plain
    :class:`Trainer`; ``with make_trainer(...) as trainer: trainer.train()``."""
    info = RankInfo.from_env()
    if info is None:
        if config.distill_from:  # a student learning from a teacher's outputs too
            from .distill import DistillTrainer

            yield DistillTrainer(config, run_dir, log=log)
            return
        yield Trainer(config, run_dir, log=log)
        return
    with process_group(info, config.device) as device:
        if device.type == "cuda":
            config = config.replace(device=str(device))
        yield DistributedTrainer(config, run_dir, info, log=log)
