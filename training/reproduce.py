"""``rtbwe-train reproduce``: the paper's ten systems at an equal budget, tested, reported.

    rtbwe-train reproduce --data corpus/v1 --budget-steps 2000 --width-scale 8
    rtbwe-train reproduce --data corpus/v1 --budget 2h --systems arunet,unet,resnet --device cuda
    rtbwe-train reproduce --report-only          # rebuild docs/reproduction.md from finished runs
    rtbwe-train reproduce --time-only --width-scale 1 --batch-size 1 --segment-samples 2048

Rows: Input (unprocessed); U-Net and ResNet each plain, DA, BN, DO; ARUNet (DA unless
``--no-arunet-da``). DA = a random Table I filter per segment; the rest see Chebyshev-1 6.
Budget: ``--budget-steps N`` per system, or ``--budget-seconds S`` of training compute per
system, timed once into steps (kept in ``RUN_DIR/plan.json``). ``--width-scale S`` divides
every channel width by S, keeping kernels, depth and topology.

``RUN_DIR/SLUG/`` holds the Trainer's checkpoint, ``log.csv``, ``best.json``, then
``trained.json`` (size, steps, where) and ``result.json`` (test metrics): a re-run skips
what is finished and resumes the rest. The report: ``OUT_DIR/reproduction.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import re
import signal as signal_module
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rtbwe import filters, models

from . import report
from .config import TrainConfig, tomllib
from .trainer import Trainer, model_runner, pick_device


class ReproduceError(RuntimeError):
    """A reproduction cannot start or continue; the message says what to do."""


class Interrupted(ReproduceError):
    """Training stopped on SIGINT/SIGTERM after saving its checkpoint."""


@dataclass(frozen=True)
class System:
    label: str            # the Table II row name
    slug: str             # folder under RUN_DIR
    model: str | None     # registry name; None is the unprocessed Input row
    augment: bool         # DA: random Table I filter per segment


BASE_SYSTEMS = tuple(System(*row) for row in (
    ("Input", "input", None, False),
    ("U-Net", "unet", "unet", False), ("U-Net DA", "unet-da", "unet", True),
    ("U-Net BN", "unet-bn", "unet-bn", False), ("U-Net DO", "unet-do", "unet-do", False),
    ("ResNet", "resnet", "resnet", False), ("ResNet DA", "resnet-da", "resnet", True),
    ("ResNet BN", "resnet-bn", "resnet-bn", False),
    ("ResNet DO", "resnet-do", "resnet-do", False), ("ARUNet", "arunet", "arunet", True)))
SLUGS = tuple(s.slug for s in BASE_SYSTEMS)
WIDTH_KEYS = ("filters", "bottleneck_filters", "channels")
# Options that change what a checkpoint holds: a run dir trained with others is refused.
ARCH_KEYS = ("model", "model_kwargs", "augment", "cutoff_hz", "sample_rate", "batch_size",
             "segment_samples", "seed")


@dataclass(frozen=True)
class ReproduceSettings:
    """Everything one reproduction run depends on (the CLI options, one to one)."""

    data: str = "corpus/v1"
    run_dir: str = "runs/reproduce"
    out_dir: str = "docs"
    budget_steps: int | None = None
    budget_seconds: float | None = None
    width_scale: float = 1.0
    batch_size: int = 8
    segment_samples: int = 8192
    device: str = "auto"
    threads: int = 2
    seed: int = 0
    arunet_da: bool = True
    systems: tuple[str, ...] = SLUGS
    cutoff_hz: float = 6000.0
    sample_rate: int = 48000
    val_every: int | None = None          # default: a tenth of the steps
    val_clips: int = 8
    val_clip_seconds: float = 2.0
    eval_clips: int = 16
    eval_clip_seconds: float = 5.0
    visqol: bool = True
    visqol_clips: int = 8
    vggish_weights: str | None = None
    whole: bool = False                   # whole-clip inference instead of BandwidthExtender
    train_limit: int | None = None
    max_track_seconds: float | None = None
    compare_run_dir: str | None = None     # another budget of the same systems, for the report


SMOKE = dict(  # --smoke: the whole pipeline in seconds on a tiny folder corpus (tests)
    budget_steps=2, width_scale=64.0, batch_size=2, segment_samples=2048, threads=1,
    device="cpu", val_clips=2, val_clip_seconds=0.5, eval_clips=2, eval_clip_seconds=1.0,
    visqol=False)


def systems_for(settings: ReproduceSettings) -> list[System]:
    """All ten rows, with ARUNet's DA flag from the settings."""
    return [dataclasses.replace(s, augment=settings.arunet_da) if s.slug == "arunet" else s
            for s in BASE_SYSTEMS]


def _scale_width(width: int, width_scale: float) -> int:
    return max(2, 2 * round(width / (2 * width_scale)))  # even: the x2 pixel shuffles need it


def scaled_model_kwargs(model: str, width_scale: float) -> dict[str, Any]:
    """Constructor overrides that divide every channel width of ``model`` by ``width_scale``.

    Widths are rounded to even numbers of at least 2; kernels, depth and topology are kept.
    ``width_scale == 1`` returns ``{}`` (the paper size, exactly the registry model).
    """
    if width_scale < 1:
        raise ReproduceError(f"--width-scale must be >= 1 (1 = paper size), got {width_scale}")
    if width_scale == 1:
        return {}
    cls_name, kwargs = models.build_kwargs(model)
    params = inspect.signature(models.MODEL_CLASSES[cls_name].__init__).parameters
    full = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    full.update(kwargs)
    out: dict[str, Any] = {}
    for key in WIDTH_KEYS:
        if key in full:
            value = full[key]
            out[key] = ([_scale_width(w, width_scale) for w in value]
                        if isinstance(value, (list, tuple)) else _scale_width(value, width_scale))
    return out


def parse_budget(text: str) -> tuple[str, float]:
    """``"2000"``/``"2000steps"`` -> ("steps", 2000); ``"600s"``, ``"45min"``, ``"2h"`` ->
    ("seconds", ...)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(steps?|s|sec|min|h)?\s*", text)
    if not m:
        raise ReproduceError(f"cannot read --budget {text!r}; write e.g. 2000, 2000steps, 600s, "
                             "45min or 2h")
    value, unit = float(m.group(1)), (m.group(2) or "steps")
    if unit.startswith("step"):
        return "steps", value
    return "seconds", value * {"s": 1, "sec": 1, "min": 60, "h": 3600}[unit]


def seconds_per_step(model: str, model_kwargs: dict[str, Any], batch_size: int,
                     segment_samples: int, device: str = "auto", steps: int = 2
                     ) -> tuple[float, int]:
    """Median seconds of one AdamW training step on a random (batch, 1, segment) batch,
    after one untimed warm-up step; and the parameter count."""
    dev = pick_device(device)
    net = models.build(model, **model_kwargs).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4)
    x = 0.1 * torch.randn(batch_size, 1, segment_samples, device=dev)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.mse_loss(net(x), x.flip(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times)), models.count_parameters(net)


def plan_steps(settings: ReproduceSettings, log: Callable[[str], None]) -> dict[str, int]:
    """Training steps per system slug; a seconds budget is timed once and kept in plan.json."""
    trainable = [s for s in systems_for(settings) if s.model and s.slug in settings.systems]
    if settings.budget_steps is not None:
        return {s.slug: int(settings.budget_steps) for s in trainable}
    plan_path = Path(settings.run_dir) / "plan.json"
    key = {k: getattr(settings, k) for k in ("budget_seconds", "width_scale", "batch_size",
                                            "segment_samples", "device", "threads")}
    plan = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    if plan.get("key") != key:
        plan = {"key": key, "seconds_per_step": {}, "steps": {}}
    for s in trainable:
        if s.slug not in plan["steps"]:
            sec, _ = seconds_per_step(s.model, scaled_model_kwargs(s.model, settings.width_scale),
                                      settings.batch_size, settings.segment_samples,
                                      settings.device)
            plan["seconds_per_step"][s.slug] = sec
            plan["steps"][s.slug] = max(1, int(settings.budget_seconds / sec))
            log(f"{s.label}: {sec:.3f} s/step -> {plan['steps'][s.slug]} steps")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    return {s.slug: int(plan["steps"][s.slug]) for s in trainable}


def train_config(system: System, settings: ReproduceSettings, steps: int) -> TrainConfig:
    return TrainConfig(
        name=f"reproduce-{system.slug}", model=system.model,
        model_kwargs=scaled_model_kwargs(system.model, settings.width_scale),
        augment=system.augment, cutoff_hz=settings.cutoff_hz, sample_rate=settings.sample_rate,
        data=settings.data, steps=steps, batch_size=settings.batch_size,
        segment_samples=settings.segment_samples, seed=settings.seed, threads=settings.threads,
        device=settings.device, val_every=settings.val_every or max(1, steps // 10),
        val_clips=settings.val_clips, val_clip_seconds=settings.val_clip_seconds,
        checkpoint_every=min(250, max(1, steps // 10)), log_every=min(50, max(1, steps // 20)),
        max_track_seconds=settings.max_track_seconds, train_limit=settings.train_limit)


def check_compatible(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume a run dir whose checkpoint was trained with other ARCH_KEYS."""
    path = run_dir / "config.toml"
    if not path.exists():
        return
    with open(path, "rb") as f:
        old = tomllib.load(f)
    new, defaults = config.to_dict(), TrainConfig().to_dict()
    diffs = [f"{k}: {old.get(k, defaults[k])!r} there, {new[k]!r} now" for k in ARCH_KEYS
             if json.dumps(old.get(k, defaults[k]), sort_keys=True) !=
             json.dumps(new[k], sort_keys=True)]
    if diffs:
        raise ReproduceError(f"{run_dir} was trained with other options ({'; '.join(diffs)}). "
                             "Pass the same options to resume it, choose another --run-dir, "
                             f"or delete {run_dir} to start that system again.")


def where_trained(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({platform.machine()}, {threads} threads of {os.cpu_count()} cores)"


def train_system(system: System, settings: ReproduceSettings, steps: int,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Train (or resume) one system to ``steps``; returns what trained.json records."""
    run_dir = Path(settings.run_dir) / system.slug
    marker = run_dir / "trained.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info["steps"] >= steps:
            return info
    config = train_config(system, settings, steps)
    check_compatible(run_dir, config)
    trainer = Trainer(config, run_dir, log=log)
    saved = {sig: signal_module.getsignal(sig) for sig in (signal_module.SIGINT,
                                                            signal_module.SIGTERM)}
    try:
        trainer.train(resume=True)
    finally:
        for sig, handler in saved.items():  # the Trainer's handlers would swallow Ctrl-C later
            try:
                signal_module.signal(sig, handler)
            except (ValueError, TypeError):
                pass
    if trainer.stopped:  # set by the Trainer's SIGINT/SIGTERM handler after a checkpoint
        raise Interrupted(f"{system.label} stopped at step {trainer.step}/{steps}; run the same "
                          "command again to resume from its checkpoint")
    best = json.loads((run_dir / "best.json").read_text())
    info = {"steps": trainer.step, "train_seconds": round(trainer.elapsed, 1),
            "device": str(trainer.device), "where": where_trained(trainer.device,
                                                                  torch.get_num_threads()),
            "parameters": models.count_parameters(trainer.model),
            "width_scale": settings.width_scale, "model_kwargs": config.model_kwargs,
            "batch_size": settings.batch_size, "segment_samples": settings.segment_samples,
            "best_step": best.get("steps"), "best_validation": best.get("validation")}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return info


def eval_settings(settings: ReproduceSettings):
    from .evaluate import EvalSettings

    return EvalSettings(clip_seconds=settings.eval_clip_seconds, max_clips=settings.eval_clips,
                        cutoff_hz=settings.cutoff_hz, sample_rate=settings.sample_rate,
                        visqol=settings.visqol, visqol_clips=settings.visqol_clips,
                        vggish_weights=settings.vggish_weights)


def evaluate_system(system: System, settings: ReproduceSettings, clips: list[np.ndarray],
                    train_info: dict | None) -> dict[str, Any]:
    """Test metrics per filter, plus the first clip's outputs for Fig. 3 (``fig3.npz``)."""
    from rtbwe.weights import load_model

    from .evaluate import evaluate, system_runner

    run_dir = Path(settings.run_dir) / system.slug
    run_dir.mkdir(parents=True, exist_ok=True)
    model = None if system.model is None else load_model(run_dir / "best.json")
    if model is not None and settings.whole:
        batch_run = model_runner(model, pick_device(settings.device),
                                 sample_rate=settings.sample_rate)
        run = lambda x: batch_run(x[None])[0]  # noqa: E731  (samples,) -> (samples,)
    else:
        run = system_runner(model, settings.sample_rate)
    ev = eval_settings(settings)
    test = evaluate(run, clips, ev)
    fig = {"reference": clips[0]}
    for name, spec in filters.TEST_FILTERS.items():
        fig[name] = np.asarray(run(filters.apply(clips[0], settings.sample_rate,
                                                 settings.cutoff_hz, spec)), dtype=np.float32)
    np.savez(run_dir / "fig3.npz", **fig)
    return {"label": system.label, "slug": system.slug, "model": system.model,
            "augment": system.augment, "train": train_info, "test": test,
            "eval": eval_record(settings),
            "fig_audio": str(run_dir / "fig3.npz")}


def eval_record(settings: ReproduceSettings) -> dict:
    """The evaluation settings as result.json stores them (JSON types: lists, not tuples), so
    a re-run can tell whether a finished system was evaluated the same way."""
    record = dataclasses.asdict(eval_settings(settings)) | {"whole": settings.whole}
    return json.loads(json.dumps(record))


def reproduce(settings: ReproduceSettings, log: Callable[[str], None] = print,
              report_only: bool = False) -> Path:
    """Train and evaluate the selected systems (resuming), then write the report.

    Returns the path of ``reproduction.md``. Raises :class:`Interrupted` on Ctrl-C/SIGTERM
    (checkpoints are saved) and :class:`ReproduceError` for options that cannot work.
    """
    unknown = sorted(set(settings.systems) - set(SLUGS))
    if unknown:
        raise ReproduceError(f"unknown --systems {unknown}; choose from {', '.join(SLUGS)}")
    if not report_only:
        if (settings.budget_steps is None) == (settings.budget_seconds is None):
            raise ReproduceError("give exactly one budget: --budget-steps N, --budget-seconds S "
                                 "or --budget (e.g. 2000steps, 2h); or --smoke")
        torch.set_num_threads(settings.threads)
        steps = plan_steps(settings, log)
        clips: list[np.ndarray] | None = None
        ev = eval_record(settings)
        for system in systems_for(settings):
            if system.slug not in settings.systems:
                continue
            result_path = Path(settings.run_dir) / system.slug / "result.json"
            done = json.loads(result_path.read_text()) if result_path.exists() else None
            info = train_system(system, settings, steps[system.slug], log) if system.model else None
            if done and done.get("eval") == ev and (done.get("train") or {}).get("steps") == (
                    info or {}).get("steps"):
                log(f"{system.label}: finished earlier, kept ({result_path})")
                continue
            if clips is None:
                from .data import dataset_files
                from .evaluate import test_clips

                clips = test_clips(dataset_files(settings.data, "auto", settings.seed)["test"],
                                   eval_settings(settings))
            log(f"{system.label}: evaluating on {len(clips)} test clips")
            record = evaluate_system(system, settings, clips, info)
            result_path.write_text(json.dumps(record, indent=2) + "\n")
    return write_report(settings, log, report_only)


def write_report(settings: ReproduceSettings, log: Callable[[str], None] = print,
                 report_only: bool = False) -> Path:
    """reproduction.md, reproduction-results.csv and the figures under ``settings.out_dir``."""
    records = report.load_records(systems_for(settings), Path(settings.run_dir))
    command = report.command_line(settings) + (" --report-only" if report_only else "")
    compare = None
    if settings.compare_run_dir:
        if not Path(settings.compare_run_dir).is_dir():
            raise ReproduceError(f"--compare-run-dir {settings.compare_run_dir}: no such folder")
        compare = (settings.compare_run_dir,
                   report.load_records(systems_for(settings), Path(settings.compare_run_dir)))
    return report.write_all(records, settings, command, log, compare)


def time_systems(settings: ReproduceSettings, steps: int, log: Callable[[str], None]) -> None:
    """Print seconds per training step for each selected architecture (trains nothing)."""
    torch.set_num_threads(settings.threads)
    seen: set[str] = set()
    log(f"batch {settings.batch_size} x {settings.segment_samples} samples, width scale "
        f"{settings.width_scale:g}, {torch.get_num_threads()} threads, device {settings.device}")
    for s in systems_for(settings):
        if not s.model or s.model in seen or s.slug not in settings.systems:
            continue
        seen.add(s.model)
        sec, params = seconds_per_step(s.model, scaled_model_kwargs(s.model, settings.width_scale),
                                       settings.batch_size, settings.segment_samples,
                                       settings.device, steps)
        log(f"{s.model:10s} {params:>12,} params  {sec:8.3f} s/step  {sec * 100 / 60:8.1f} min "
            "per 100 steps")


def settings_from_args(args: argparse.Namespace) -> ReproduceSettings:
    """CLI options over the --smoke preset over the defaults."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ReproduceSettings)
             if getattr(args, f.name, None) is not None}
    if args.budget is not None:
        kind, value = parse_budget(args.budget)
        given["budget_steps" if kind == "steps" else "budget_seconds"] = (
            int(value) if kind == "steps" else value)
    if isinstance(given.get("systems"), str):
        given["systems"] = tuple(x.strip() for x in given["systems"].split(",") if x.strip())
    base = dict(SMOKE) if args.smoke else {}
    if any(k in given for k in ("budget_steps", "budget_seconds")):
        base.pop("budget_steps", None)
    return ReproduceSettings(**{**base, **given})


def cmd_reproduce(args: argparse.Namespace) -> int:
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        settings = settings_from_args(args)
        if args.time_only:
            time_systems(settings, args.time_steps, log)
            return 0
        reproduce(settings, log, report_only=args.report_only)
    except ReproduceError as err:  # Interrupted: 130, as a shell reports Ctrl-C
        stopped = isinstance(err, Interrupted)
        print(f"{'interrupted' if stopped else 'error'}: {err}", file=sys.stderr)
        return 130 if stopped else 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reproduce`` to ``rtbwe-train``'s subcommands."""
    r = subparsers.add_parser("reproduce", help="train, test and report the paper's 10 systems",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    b = r.add_mutually_exclusive_group()
    b.add_argument("--budget", help="per system: 2000 / 2000steps (steps) or 600s, 45min, 2h "
                   "(training compute, timed on this machine)")
    b.add_argument("--budget-steps", type=int, help="training steps per system")
    b.add_argument("--budget-seconds", type=float, help="training compute seconds per system")
    r.add_argument("--smoke", action="store_true", help="tiny preset: 2 steps, width/64, "
                   "1 s clips, no ViSQOL (checks the pipeline in seconds)")
    r.add_argument("--data", help="corpus, MAESTRO or audio folder (default corpus/v1)")
    r.add_argument("--run-dir", help="checkpoints and results (default runs/reproduce)")
    r.add_argument("--out-dir", help="report, figures and CSV (default docs)")
    r.add_argument("--systems", help=f"comma-separated subset of: {','.join(SLUGS)}")
    r.add_argument("--width-scale", type=float, help="divide channel widths by this (1 = paper)")
    r.add_argument("--batch-size", type=int, help="training batch (paper 8)")
    r.add_argument("--segment-samples", type=int, help="training segment length (paper 8192)")
    r.add_argument("--device", help="auto | cpu | cuda")
    r.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    r.add_argument("--arunet-da", action=argparse.BooleanOptionalAction, default=None,
                   help="train ARUNet with data augmentation (default yes)")
    r.add_argument("--val-every", type=int, help="steps between validations (default steps/10)")
    r.add_argument("--eval-clips", type=int, help="test clips (default 16)")
    r.add_argument("--eval-clip-seconds", type=float, help="test clip length (default 5)")
    r.add_argument("--visqol", action=argparse.BooleanOptionalAction, default=None,
                   help="compute ViSQOL in the test table (default yes; --smoke: no)")
    r.add_argument("--vggish-weights", help="torchvggish state dict: adds the VGG column")
    r.add_argument("--whole", action="store_true", default=None,
                   help="run each network over whole clips, not through BandwidthExtender")
    for flag, kind, text in (
            ("--seed", int, "training seed"), ("--val-clips", int, "validation clips"),
            ("--val-clip-seconds", float, "validation clip length in seconds"),
            ("--visqol-clips", int, "test clips that also get ViSQOL"),
            ("--train-limit", int, "use only the first N training files"),
            ("--max-track-seconds", float, "seconds read from each training file")):
        r.add_argument(flag, type=kind, help=f"{text} (default: the preset's)")
    r.add_argument("--compare-run-dir", help="a run dir of the same systems at another budget: "
                   "the report adds a budget-check table")
    r.add_argument("--report-only", action="store_true", help="only rebuild the report")
    r.add_argument("--time-only", action="store_true",
                   help="print seconds per training step of each architecture and exit")
    r.add_argument("--time-steps", type=int, default=2, help="timed steps for --time-only")
    r.set_defaults(func=cmd_reproduce)
