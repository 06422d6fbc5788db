"""The training loop: the paper's recipe, resumable, logged to CSV.

Recipe: AdamW (betas 0.9/0.99, decoupled weight decay), lr 5e-4 with cosine annealing and
warm restarts every 20,000 iterations down to 1e-7, batch 8, MSE loss.

Files in ``runs/NAME/``:

* ``config.toml``: the resolved config;
* ``checkpoint.pt``: model, optimizer, scheduler, sampler RNG and step; written atomically
  every ``checkpoint_every`` steps and on SIGTERM / Ctrl-C; read with
  ``torch.load(weights_only=True)``;
* ``log.csv``: one row per ``log_every`` steps (loss, lr) and per validation;
* ``best.safetensors`` + ``best.json``: the weights with the best validation SNR (seen
  and unseen filters averaged, as the paper's Fig. 2), with their model card.
"""
from __future__ import annotations

import csv
import math
import os
import signal as signal_module
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from rtbwe import filters, metrics, models
from rtbwe.conditioning import condition_bands
from rtbwe.passband import lock_to_band
from rtbwe.weights import save_model

from .config import TrainConfig, dump_toml
from .corpus import manifest_hash
from .degrade import TARGET_MARGIN, WideSampler, track_bandwidths_hz
from .degrade import describe as describe_degradations
from .wide import Prefetcher, WideValidation
from .data import AudioPool, PairSampler, dataset_files, stretched_pool, validation_clips

LOG_FIELDS = ["step", "seconds", "loss", "lr", "steps_per_s", "split",
              "seen_snr", "seen_dsnr", "seen_lsd", "seen_lsd_hf",
              "unseen_snr", "unseen_dsnr", "unseen_lsd", "unseen_lsd_hf", "avg_snr", "avg_lsd",
              "mean_dsnr", "worst_dsnr", "full_band_snr"]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


def stft_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution log-magnitude STFT loss on (batch, 1, samples)."""
    total = y.new_zeros(())
    for n_fft in (512, 1024, 2048):
        window = torch.hann_window(n_fft, device=y.device)
        a = torch.stft(y[:, 0], n_fft, n_fft // 4, window=window, return_complex=True).abs()
        b = torch.stft(target[:, 0], n_fft, n_fft // 4, window=window, return_complex=True).abs()
        total = total + F.l1_loss(torch.log(a + 1e-5), torch.log(b + 1e-5))
    return total / 3


def highband(x: torch.Tensor, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """Zero the FFT bins at or below ``cutoff_hz``: (batch, 1, samples) -> same."""
    spec = torch.fft.rfft(x, dim=-1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate).to(x.device)
    return torch.fft.irfft(spec * (freqs > cutoff_hz), n=x.shape[-1], dim=-1)


class ValidationSet:
    """Fixed clips low-passed by the seen (Chebyshev-1 6) and unseen (Butterworth 6) filters."""

    def __init__(self, clips: list[np.ndarray], sample_rate: int, cutoff_hz: float):
        self.reference = np.stack(clips)  # (clips, samples)
        self.sample_rate, self.cutoff_hz = sample_rate, cutoff_hz
        self.inputs = {name: filters.apply(self.reference, sample_rate, cutoff_hz, spec)
                       for name, spec in filters.TEST_FILTERS.items()}

    def evaluate(self, run: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        """``run`` maps (clips, samples) -> (clips, samples). Returns the metrics per filter."""
        out: dict[str, float] = {}
        for name, lowpassed in self.inputs.items():
            estimate = run(lowpassed)
            snr_in = np.mean([metrics.snr_db(r, x) for r, x in zip(self.reference, lowpassed)])
            snr = np.mean([metrics.snr_db(r, e) for r, e in zip(self.reference, estimate)])
            out[f"{name}_snr"] = float(snr)
            out[f"{name}_dsnr"] = float(snr - snr_in)
            out[f"{name}_lsd"] = metrics.lsd(self.reference, estimate, self.sample_rate)
            out[f"{name}_lsd_hf"] = metrics.lsd_hf(self.reference, estimate, self.sample_rate,
                                                   self.cutoff_hz)
        out["avg_snr"] = (out["seen_snr"] + out["unseen_snr"]) / 2
        out["avg_lsd"] = (out["seen_lsd"] + out["unseen_lsd"]) / 2
        return out


def model_runner(model: torch.nn.Module, device: torch.device, chunk: int = 8,
                 sample_rate: int = 48000) -> Callable[[np.ndarray], np.ndarray]:
    """Whole-clip inference: (clips, samples) -> (clips, samples) in eval mode. A conditioned
    model gets each clip's whole-clip condition (``training/clip_conditions.py``)."""
    from .clip_conditions import clip_condition

    def run(x: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), chunk):
                clips = x[i:i + chunk]
                batch = torch.from_numpy(np.ascontiguousarray(clips))[:, None].to(device)
                if condition_bands(model):
                    cond = np.stack([clip_condition(c, sample_rate) for c in clips])
                    y = model(batch, torch.from_numpy(cond).to(device))
                else:
                    y = model(batch)
                outs.append(y[:, 0].float().cpu().numpy())
        model.train(was_training)
        return np.concatenate(outs)
    return run


def validation_split(files: dict[str, list[Path]], log: Callable[[str], None]
                     ) -> tuple[list[Path], list[Path]]:
    """Training and validation files. Without a validation split (a tiny corpus) the last tenth
    of the training files, at least one, is held out for validation, and the log says so; the
    test split is never used to choose weights."""
    train, validation = list(files["train"]), list(files["validation"])
    if validation:
        return train, validation
    if len(train) < 2:
        raise ValueError(f"the data has no validation split and {len(train)} training file(s); "
                         "need at least 2 training files to hold one out for validation (the "
                         "test split is never used for it)")
    held = max(1, len(train) // 10)
    log(f"data: no validation split: held out {held} of {len(train)} training files for "
        f"validation ({', '.join(p.name for p in train[-held:][:3])}"
        f"{' ...' if held > 3 else ''}); the test split stays unseen")
    return train[:-held], train[-held:]


def targets_clearing_cutoff(pool: AudioPool, cutoff_hz: float,
                            log: Callable[[str], None]) -> AudioPool:
    """The fixed-cutoff task (``degradations = "cutoff"``) on mixed data: only the tracks
    whose own bandwidth (measured, :func:`rtbwe.training.degrade.track_bandwidths_hz`) lies
    above ``cutoff_hz / TARGET_MARGIN``, as the wide task draws its band limits. A lossy
    recording that stops at 7 kHz would teach a 6 kHz network to leave 7-24 kHz empty, and
    one that stops below the cutoff to add nothing."""
    bandwidth_hz = track_bandwidths_hz(pool.tracks, pool.sample_rate)
    keep = [i for i, bw in enumerate(bandwidth_hz) if TARGET_MARGIN * bw >= cutoff_hz]
    if not keep:
        raise ValueError(f"no training track's own bandwidth clears the {cutoff_hz:.0f} Hz "
                         f"cutoff (by {TARGET_MARGIN}); highest "
                         f"{max(bandwidth_hz) / 1000:.1f} kHz")
    if len(keep) < len(pool.tracks):
        log(f"data: {len(pool.tracks) - len(keep)} of {len(pool.tracks)} training tracks "
            f"left out: their own bandwidth is under {cutoff_hz / TARGET_MARGIN / 1000:.1f} kHz")
    return AudioPool([pool.tracks[i] for i in keep], [pool.names[i] for i in keep],
                     pool.sample_rate, [bandwidth_hz[i] for i in keep])


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, log: Callable[[str], None] = print):
        self.cfg, self.run_dir, self.log = config, Path(run_dir), log
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = pick_device(config.device)
        self.model = models.build(config.model, **self.model_kwargs()).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=config.betas,
                                     weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.opt, T_0=config.restart_steps, eta_min=config.lr_min)
        files = dataset_files(config.data, config.data_kind, config.seed)
        for extra in config.extra_data:  # more sources, each split by its own files
            for split, paths in dataset_files(extra, "auto", config.seed).items():
                files[split] = files[split] + paths
        self.data_hash = manifest_hash(config.data)
        train_files, val_files = validation_split(files, self.log)
        train = AudioPool.load(train_files, config.sample_rate, config.max_track_seconds,
                               config.train_limit)
        val = AudioPool.load(val_files, config.sample_rate, config.max_track_seconds, limit=64)
        self.log(f"data: {train.seconds / 60:.1f} min train in {len(train.tracks)} files, "
                 f"{val.seconds / 60:.1f} min validation")
        self.wide = config.degradations == "wide"
        self.prefetcher = None
        if self.wide:  # every bandwidth: rtbwe.training.degrade / wide
            train.bandwidth_hz = track_bandwidths_hz(train.tracks, config.sample_rate)
            self.log(f"data: target bandwidths (own, measured): median "
                     f"{np.median(train.bandwidth_hz) / 1000:.1f} kHz, "
                     f"{np.mean(np.array(train.bandwidth_hz) < 20000):.0%} of tracks below 20 kHz")
            self.sampler = WideSampler(train, config.segment_samples,
                                       condition_bands(self.model), seed=config.seed)
            self.val = WideValidation(validation_clips(val, config.val_clip_seconds,
                                                       config.val_clips), config.sample_rate)
        else:
            if config.stretch:  # the network of cutoff scaling: music at other rates too
                train = stretched_pool(train, *config.stretch[:2], int(config.stretch[2]),
                                       seed=config.seed)
                self.log(f"data: {len(train.tracks)} tracks with the stretched copies "
                         f"(x{config.stretch[0]:g}-{config.stretch[1]:g}), "
                         f"{train.seconds / 60:.1f} min")
            if config.extra_data or config.stretch:  # no target synthesised above its band
                train = targets_clearing_cutoff(train, config.cutoff_hz, self.log)
            self.sampler = PairSampler(train, config.segment_samples, config.cutoff_hz,
                                       config.augment, seed=config.seed,
                                       cutoff_jitter=config.cutoff_jitter,
                                       augment_set=config.augment_set)
            self.val = ValidationSet(validation_clips(val, config.val_clip_seconds,
                                                      config.val_clips),
                                     config.sample_rate, config.cutoff_hz)
        self.step, self.best, self.elapsed = 0, -math.inf, 0.0
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        # what a training step calls: the model, or its DDP wrapper (training/distributed.py)
        self.forward_model: torch.nn.Module = self.model
        (self.run_dir / "config.toml").write_text(dump_toml(config))
        self._stop = False

    def model_kwargs(self) -> dict:
        """The config's model kwargs; a passband lock also gets the run's sample rate, so the
        model card rebuilds the same filter."""
        kwargs = dict(self.cfg.model_kwargs)
        if kwargs.get("keep_below_hz") is not None:
            kwargs.setdefault("sample_rate", self.cfg.sample_rate)
        return kwargs

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """What ``checkpoint.pt`` holds (training/distributed.py adds every rank's sampler)."""
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "step": self.step, "best": self.best,
                "elapsed": self.elapsed, "sampler": self.sampler.state(),
                "torch_rng": torch.get_rng_state()}

    def save_checkpoint(self) -> None:
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(self.checkpoint_state(), tmp)
        os.replace(tmp, self.ckpt_path)

    def load_checkpoint(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        self.apply_checkpoint(torch.load(self.ckpt_path, map_location=self.device,
                                         weights_only=True))
        self.log(f"resumed from {self.ckpt_path} at step {self.step}")
        return True

    def apply_checkpoint(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.best = int(state["step"]), float(state["best"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.sampler.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())

    # ---- logging -----------------------------------------------------------------------
    def _write_row(self, row: dict) -> None:
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items() if k in LOG_FIELDS})

    def card(self, val: dict[str, float]) -> dict:
        cls_name, kwargs = models.build_kwargs(self.cfg.model, **self.model_kwargs())
        return {"name": self.cfg.name, "model": self.cfg.model, "model_class": cls_name,
                "model_kwargs": kwargs, "sample_rate": self.cfg.sample_rate,
                "cutoff_hz": self.cfg.cutoff_hz, "training": self.cfg.to_dict(),
                "steps": self.step, "train_seconds": round(self.elapsed, 1),
                "device": str(self.device), "data_manifest_sha256": self.data_hash,
                "validation": val,
                **({"degradations": describe_degradations()} if self.wide else {})}

    def validate(self) -> dict[str, float]:
        if self.wide:
            return self.validate_wide()
        val = self.val.evaluate(model_runner(self.model, self.device,
                                             sample_rate=self.cfg.sample_rate))
        self._write_row({"step": self.step, "seconds": self.elapsed, "split": "validation", **val})
        self.log(f"step {self.step}: validation, seen filter: SNR {val['seen_snr']:.2f} dB "
                 f"(ΔSNR {val['seen_dsnr']:+.2f} dB over the input), LSD-HF "
                 f"{val['seen_lsd_hf']:.3f}; unseen filter: SNR {val['unseen_snr']:.2f} dB "
                 f"(ΔSNR {val['unseen_dsnr']:+.2f} dB)")
        if val["avg_snr"] > self.best:
            self.best = val["avg_snr"]
            save_model(self.model, self.run_dir / "best", self.card(val))
        return val

    def validate_wide(self) -> dict[str, float]:
        val = self.val.evaluate(self.model)
        self._write_row({"step": self.step, "seconds": self.elapsed, "split": "validation",
                         "mean_dsnr": val["mean_dsnr"], "worst_dsnr": val["worst_dsnr"],
                         "full_band_snr": val.get("full_band_snr")})
        self.log(f"step {self.step}: validation through BandwidthExtender: mean ΔSNR "
                 f"{val['mean_dsnr']:+.2f} dB, worst row {val['worst_dsnr']:+.2f} dB, "
                 + ", ".join(f"{k[5:-1]} {v:+.2f}" for k, v in val.items()
                             if k.startswith("dsnr[")))
        if val["mean_dsnr"] > self.best:
            self.best = val["mean_dsnr"]
            save_model(self.model.cpu(), self.run_dir / "best", self.card(val))
            self.model.to(self.device)
        return val

    def wide_loss(self) -> torch.Tensor:
        """One wide batch through the model and the training form of the detected-band lock."""
        x, y, c, low_hz, high_hz = (self.prefetcher.next() if self.prefetcher is not None
                                    else self.sampler.batch(self.cfg.batch_size))
        x, y = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        out = self.forward_model(x, torch.from_numpy(c).to(self.device))
        return self.loss(lock_to_band(x, out, self.cfg.sample_rate, low_hz, high_hz), y)

    # ---- the loop ----------------------------------------------------------------------
    def single_cutoff_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One batch of the paper's task (the config's filters at ``cutoff_hz``): input,
        target (batch, 1, samples) and, for a conditioned model, its condition (batch,
        bands); None otherwise."""
        conditioned = bool(condition_bands(self.model))
        batch = (self.sampler.conditioned_batch(self.cfg.batch_size) if conditioned
                 else (*self.sampler.batch(self.cfg.batch_size), None))
        return tuple(None if a is None else torch.from_numpy(a).to(self.device) for a in batch)

    def single_cutoff_loss(self) -> torch.Tensor:
        """One single-cutoff batch through the model, against the clean target."""
        x, y, c = self.single_cutoff_batch()
        return self.loss(self.forward_model(x) if c is None else self.forward_model(x, c), y)

    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(y, target)
        if self.cfg.hf_loss_weight:
            hf = highband(y - target, self.cfg.sample_rate, self.cfg.cutoff_hz)
            loss = loss + self.cfg.hf_loss_weight * hf.pow(2).mean()
        if self.cfg.spectral_loss_weight:
            loss = loss + self.cfg.spectral_loss_weight * stft_loss(y, target)
        return loss

    def warm_start(self, card_path: str) -> None:
        """Load weights (safetensors, no optimizer state) from a model card."""
        from rtbwe.weights import load_model

        source = load_model(card_path)
        own = self.model.state_dict()
        # a different condition layout (40 -> 48 values) makes the FiLM net new: it starts at
        # its zero init, so the warm-started net begins as the source's U-Net
        state = {k: v for k, v in source.state_dict().items()
                 if not (k.startswith("film.") and (k not in own or own[k].shape != v.shape
                                                    or condition_bands(source)
                                                    != condition_bands(self.model)))}
        result = self.model.load_state_dict(state, strict=False)
        new = [k for k in result.missing_keys if k.startswith("film.")]
        if result.unexpected_keys or len(new) != len(result.missing_keys):
            raise ValueError(f"{card_path} does not fit {self.cfg.model}: missing "
                             f"{result.missing_keys}, unexpected {result.unexpected_keys}")
        self.log(f"warm start from {card_path} ({source.card.get('steps', '?')} steps)"
                 + (f"; {len(new)} conditioning tensors start at their init" if new else ""))

    def train(self, resume: bool = True) -> dict[str, float]:
        if not (resume and self.load_checkpoint()) and self.cfg.init_from:
            self.warm_start(self.cfg.init_from)
        previous = {}
        for sig in (signal_module.SIGTERM, signal_module.SIGINT):
            try:
                previous[sig] = signal_module.signal(sig, lambda *_: setattr(self, "_stop", True))
            except ValueError:  # not in the main thread
                pass
        try:
            return self._loop()
        finally:
            if self.prefetcher is not None:
                self.prefetcher.close()
                self.prefetcher = None
            for sig, handler in previous.items():
                signal_module.signal(sig, handler)

    def should_stop(self) -> bool:
        """Checked before each step: True after SIGTERM / Ctrl-C (all ranks agree under DDP)."""
        return self._stop

    @property
    def stopped(self) -> bool:
        """True when the last :meth:`train` ended early on SIGTERM / Ctrl-C."""
        return self._stop

    def _loop(self) -> dict[str, float]:
        self.model.train()
        if self.wide and self.cfg.data_workers > 0 and self.prefetcher is None:
            self.prefetcher = Prefetcher(self.sampler.pool, self.cfg.segment_samples,
                                         condition_bands(self.model), self.cfg.seed, self.step,
                                         self.cfg.batch_size, self.cfg.data_workers)
        t_last, steps_last, loss_sum, loss_n = time.perf_counter(), self.step, 0.0, 0
        last_val: dict[str, float] = {}
        while self.step < self.cfg.steps and not self.should_stop():
            t0 = time.perf_counter()
            loss = self.wide_loss() if self.wide else self.single_cutoff_loss()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            self.sched.step()
            self.step += 1
            self.elapsed += time.perf_counter() - t0
            loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
            if self.step % self.cfg.log_every == 0:
                now = time.perf_counter()
                rate = (self.step - steps_last) / max(now - t_last, 1e-9)
                eta_min = (self.cfg.steps - self.step) / max(rate, 1e-9) / 60
                self._write_row({"step": self.step, "seconds": self.elapsed, "split": "train",
                                 "loss": loss_sum / loss_n, "lr": self.sched.get_last_lr()[0],
                                 "steps_per_s": rate})
                self.log(f"[{self.cfg.name}] step {self.step}/{self.cfg.steps}: training loss "
                         f"{loss_sum / loss_n:.3e}, {rate:.2f} steps/s, {eta_min:.0f} min left")
                t_last, steps_last, loss_sum, loss_n = now, self.step, 0.0, 0
            if self.step % self.cfg.val_every == 0 or self.step == self.cfg.steps:
                last_val = self.validate()
            if self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
        self.save_checkpoint()
        if self._stop:
            self.log(f"stopped at step {self.step}; resume with --resume")
        elif not (self.run_dir / "best.json").exists():
            last_val = self.validate()
        return last_val
