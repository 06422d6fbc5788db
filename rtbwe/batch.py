"""Restoring many files on a Ray cluster: ``rtbwe process --ray ADDRESS|auto|local IN... OUT``.

The same files, rules and output as the local ``rtbwe process`` (:mod:`rtbwe.cli_process`,
:mod:`rtbwe.cli_files`), spread over the workers of a Ray cluster (``pip install
'rtbwe[cluster]'``):

* the driver checks the paths and plans the jobs with :func:`~rtbwe.cli_files.plan_jobs`
  (nothing over an input, existing outputs refused unless ``-y``, skipped with
  ``--skip-existing``: a stopped job resumes where it was, since an output only exists once it
  is complete);
* Ray Data reads that file list (one block per file, so files spread evenly);
* an actor pool (:class:`Restorer`) holds one :class:`~rtbwe.processor.BandwidthExtender` per
  worker, loaded once, with the CLI's options (:func:`~rtbwe.cli_process.load_extender`: one
  torch thread by default); one GPU per actor when the cluster has GPUs and ``--device`` is
  ``auto`` or ``cuda``, else ``threads`` CPUs per actor;
* each file is processed whole by :func:`~rtbwe.cli_process.extend_file` (the same
  atomic write: a hidden temporary file renamed when complete), so on CPU an output equals
  the local CLI's bit for bit;
* a file that fails is reported with its error and the others go on (exit status 1 at the
  end, with the list).

Inputs and the output folder must be at the same paths on every node (a shared file system).
``ADDRESS`` is what :func:`ray.init` takes: ``auto`` (the running cluster), ``ray://host:10001``,
``host:6379``, or ``local`` (start a Ray instance on this machine: the local pool).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cli_files import CliError, Job

INSTALL_HINT = "pip install 'rtbwe[cluster]' (Ray Data)"
EXTENDER_OPTIONS = ("model", "device", "backend", "threads", "keep_below_hz", "window_ms",
                    "hop_ms", "low_latency", "no_skirt_boost")


@dataclass(frozen=True)
class FileResult:
    """What became of one input: ``error`` is empty when ``output_path`` was written."""

    input_path: Path
    output_path: Path
    error: str
    summary: str
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.error


class Restorer:
    """Ray Data actor: one ``BandwidthExtender`` for its life, files extended whole.

    ``options``: the ``rtbwe process`` arguments the extender is built from
    (:data:`EXTENDER_OPTIONS`). ``__call__`` takes a batch ``{"input": (n,) str, "output":
    (n,) str}`` and returns it with ``error``, ``summary`` and ``warnings`` ((n,) str each;
    warnings joined by newlines).
    """

    def __init__(self, options: dict, subtype: str | None, overwrite: bool,
                 limit_db: float | None):
        from .cli_process import load_extender

        self.bwe = load_extender(argparse.Namespace(**options))
        self.subtype, self.overwrite, self.limit_db = subtype, overwrite, limit_db

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .cli_process import extend_file, output_warnings, summary_line

        errors, summaries, warnings = [], [], []
        for source, target in zip(batch["input"], batch["output"]):
            job = Job(Path(str(source)), Path(str(target)))
            try:
                result = extend_file(job.input_path, job.output_path, self.bwe, None,
                                     self.subtype, self.overwrite, self.limit_db)
            except Exception as err:  # reported on the driver; the other files go on
                errors.append(str(err) if isinstance(err, (CliError, ValueError)) else
                              f"{job.input_path}: {type(err).__name__}: {err}")
                summaries.append("")
                warnings.append("")
                continue
            errors.append("")
            summaries.append(summary_line(job, result, self.bwe))
            warnings.append("\n".join(output_warnings(result, job.output_path)))
        return {"input": batch["input"], "output": batch["output"],
                "error": np.array(errors, dtype=object),
                "summary": np.array(summaries, dtype=object),
                "warnings": np.array(warnings, dtype=object)}


def actor_resources(device: str, threads: int) -> tuple[int, dict[str, float], str]:
    """How many actors the connected cluster fits, what each asks Ray for, and the device
    each builds its extender on: one GPU each when the cluster has GPUs and ``device`` is
    auto or cuda, else ``threads`` CPUs each."""
    import ray

    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    wants_gpu = device == "cuda" or device.startswith("cuda:")
    if wants_gpu and not gpus:
        raise CliError(f"--device {device}: the Ray cluster has no GPU")
    if gpus and (wants_gpu or device == "auto"):  # Ray gives each actor its own GPU as cuda:0
        return gpus, {"num_gpus": 1, "num_cpus": 1}, "cuda"
    return max(1, int(total.get("CPU", 1)) // threads), {"num_cpus": threads}, device


def restore(jobs: list[Job], options: dict, subtype: str | None = None,
            overwrite: bool = False, limit_db: float | None = None,
            actors: int | None = None, progress: bool = False):
    """Extend every job on the connected Ray cluster (:func:`ray.init` first); yields a
    :class:`FileResult` per file as the files finish (in no particular order)."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    fitting, resources, device = actor_resources(options.get("device") or "auto",
                                                 options.get("threads") or 1)
    options = {**options, "device": device}
    size = max(1, min(actors or fitting, len(jobs)))
    items = [{"input": str(job.input_path), "output": str(job.output_path)} for job in jobs]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    restored = dataset.map_batches(
        Restorer, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs={"options": options, "subtype": subtype,
                               "overwrite": overwrite, "limit_db": limit_db},
        **resources)
    for row in restored.iter_rows():
        yield FileResult(Path(row["input"]), Path(row["output"]), str(row["error"]),
                         str(row["summary"]),
                         tuple(w for w in str(row["warnings"]).split("\n") if w))


def connect(address: str) -> None:
    """``ray.init(address)`` unless Ray is already initialised in this process."""
    try:
        import ray
    except ImportError:
        raise CliError(f"--ray needs Ray: {INSTALL_HINT}") from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, **({"include_dashboard": False} if address == "local"
                                        else {}))
    except ConnectionError as err:
        raise CliError(f"cannot reach the Ray cluster at {address!r}: {err} (start one with "
                       "`ray start --head`, or pass --ray local)") from None


def run_ray(jobs: list[Job], args: argparse.Namespace) -> int:
    """``rtbwe process --ray``: the planned ``jobs`` on the cluster at ``args.ray``; prints
    what the local CLI prints, exit status 1 when a file failed."""
    try:
        connect(args.ray)
        options = {name: getattr(args, name, None) for name in EXTENDER_OPTIONS}
        results = restore(jobs, options, args.subtype, args.overwrite, args.limit,
                          progress=not args.quiet and sys.stderr.isatty())
        failed = []
        for result in results:
            if not result.ok:
                print(f"rtbwe process: error: {result.error}", file=sys.stderr)
                failed.append(result.input_path)
                continue
            print(result.summary, flush=True)
            for line in result.warnings:
                print(f"rtbwe process: warning: {line}", file=sys.stderr)
    except CliError as err:
        print(f"rtbwe process: error: {err}", file=sys.stderr)
        return 1
    print(f"{len(jobs) - len(failed)} of {len(jobs)} files written on Ray"
          + (f"; failed: {', '.join(str(p) for p in sorted(failed))}" if failed else ""))
    return 1 if failed else 0
