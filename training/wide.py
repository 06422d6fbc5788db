"""Training a model for every input bandwidth (``degradations = "wide"``): batches drawn in a
background process, and validation through the user's processing path.

* :class:`Prefetcher` runs a :class:`~rtbwe.training.degrade.WideSampler` in a forked worker
  process (degrading audio costs about as much CPU as a training step on 2 cores), seeded by
  ``(seed, step)``: a resumed run draws a fresh, reproducible stream from where it stopped.
* :class:`WideValidation` scores a model on fixed validation clips through
  ``BandwidthExtender`` (tracker, detected-band lock, overlap-add: what users run) on the
  :data:`~rtbwe.training.matrix.VALIDATION_ROWS`; the score is the mean ΔSNR over the rows.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal

import numpy as np
import torch

from .degrade import WideSampler
from .matrix import VALIDATION_ROWS, evaluate_matrix


def _worker(pool, segment_samples: int, bands: int, seed: int, batch_size: int,
            out: mp.Queue, parent_pid: int) -> None:
    # the fork inherited the trainer's stop handlers: restore the defaults, so terminate()
    # (SIGTERM) and Ctrl-C end this process instead of setting a flag it never reads
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    torch.set_num_threads(1)
    sampler = WideSampler(pool, segment_samples, bands, seed=seed)
    batch = sampler.batch(batch_size)
    while os.getppid() == parent_pid:  # a killed trainer leaves no orphan behind
        try:
            out.put(batch, timeout=5.0)
        except queue.Full:
            continue
        batch = sampler.batch(batch_size)


class Prefetcher:
    """Batches of :meth:`WideSampler.batch` from ``workers`` forked processes (0: inline)."""

    def __init__(self, pool, segment_samples: int, bands: int, seed: int, step: int,
                 batch_size: int, workers: int = 1):
        self.batch_size = batch_size
        self.processes: list[mp.Process] = []
        if workers <= 0:
            self.inline = WideSampler(pool, segment_samples, bands, seed=seed * 1_000_003 + step)
            return
        self.inline = None
        ctx = mp.get_context("fork")
        self.queue: mp.Queue = ctx.Queue(maxsize=8)
        for w in range(workers):
            p = ctx.Process(target=_worker, daemon=True, args=(
                pool, segment_samples, bands, (seed * 1_000_003 + step) * 7 + w, batch_size,
                self.queue, os.getpid()))
            p.start()
            self.processes.append(p)

    def next(self):
        if self.inline is not None:
            return self.inline.batch(self.batch_size)
        while True:
            try:
                return self.queue.get(timeout=60)
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes):
                    raise RuntimeError("the data worker process died") from None

    def close(self) -> None:
        for p in self.processes:
            p.terminate()
        self.processes.clear()
        if self.inline is None:
            self.queue.cancel_join_thread()  # never wait at exit on batches no one will read


class WideValidation:
    """Mean ΔSNR of a model over the validation rows, through ``BandwidthExtender``."""

    def __init__(self, clips: list[np.ndarray], sample_rate: int):
        self.clips, self.sample_rate = clips, sample_rate

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        from rtbwe import BandwidthExtender

        was_training = model.training
        bwe = BandwidthExtender(model.eval(), sample_rate=self.sample_rate, device="cpu")
        results = evaluate_matrix(bwe, self.clips, VALIDATION_ROWS)
        model.train(was_training)
        out = {f"dsnr[{r.name}]": r.dsnr_db for r in results if r.name != "full band"}
        full = [r for r in results if r.name == "full band"]
        if full:
            out["full_band_snr"] = full[0].dsnr_db
        out["mean_dsnr"] = float(np.mean([v for k, v in out.items() if k.startswith("dsnr[")]))
        out["worst_dsnr"] = float(min(v for k, v in out.items() if k.startswith("dsnr[")))
        return out
