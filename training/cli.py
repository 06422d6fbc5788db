"""``rtbwe-train``: build the corpus, train, evaluate, plot, export.

    rtbwe-train data build corpus/v1
    rtbwe-train fit training/configs/arunet-small-da-6k.toml        # resumes by default
    rtbwe-train eval runs/arunet-small-da-6k/best.json --data corpus/v1
    rtbwe-train plot runs/arunet-small-da-6k --out curves.png
    rtbwe-train export runs/arunet-small-da-6k rtbwe/weights/arunet-small-6k --data corpus/v1
    rtbwe-train skirt rtbwe/weights/skirt-mlp --data corpus/v2 corpus/real
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def cmd_data_build(args: argparse.Namespace) -> int:
    from .corpus import CorpusConfig, build

    cfg = CorpusConfig(max_pieces=args.max_pieces, max_seconds=args.max_seconds, seed=args.seed,
                       workers=args.workers)
    t0 = time.perf_counter()
    manifest = build(args.out_dir, cfg, progress=lambda s: print(s, flush=True))
    print(f"corpus in {args.out_dir}: {manifest['seconds']} seconds per split, "
          f"{len(manifest['errors'])} scores skipped, {time.perf_counter() - t0:.0f} s")
    return 0


def cmd_data_real(args: argparse.Namespace) -> int:
    from .real import build

    t0 = time.perf_counter()
    manifest = build(args.out_dir, args.max_seconds, args.seed,
                     progress=lambda s: print(s, flush=True))
    print(f"real recordings in {args.out_dir}: {manifest['seconds']} seconds per split, "
          f"{len(manifest['pieces'])} tracks, {time.perf_counter() - t0:.0f} s")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .config import load_config
    from .distributed import make_trainer

    cfg = load_config(args.config, steps=args.steps, device=args.device, data=args.data,
                      threads=args.threads, init_from=args.init_from)
    run_dir = Path(args.run_dir or Path("runs") / cfg.name)
    if not args.resume and (run_dir / "checkpoint.pt").exists():
        print(f"{run_dir}/checkpoint.pt exists; pass --resume to continue it or choose "
              "another --run-dir", file=sys.stderr)
        return 2
    with make_trainer(cfg, run_dir, log=lambda s: print(s, flush=True)) as trainer:
        trainer.train(resume=args.resume)  # DDP under torchrun: training/distributed.py
    return 0


def _load_any(model_arg: str):
    """A model card/weights path, a shipped name, or 'input' for the unprocessed baseline."""
    if model_arg == "input":
        return None
    from rtbwe.weights import load_model

    return load_model(model_arg)


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import dataset_files
    from .evaluate import (EvalSettings, evaluate, format_band_table, format_table,
                           lsd_hf_reduction, system_runner, test_clips, write_csv)

    import torch

    torch.set_num_threads(args.threads)
    if not (math.isfinite(args.clip_offset) and args.clip_offset >= 0):
        raise SystemExit(f"--clip-offset must be a number of seconds >= 0, got {args.clip_offset}")
    if args.matrix:
        return _eval_matrix(args)
    settings = EvalSettings(clip_seconds=args.clip_seconds, max_clips=args.clips,
                            clip_offset_seconds=args.clip_offset,
                            cutoff_hz=args.cutoff_hz, visqol=not args.no_visqol,
                            vggish_weights=args.vggish_weights, bands=args.bands,
                            extra_filters=tuple(f for f in args.extra_filters.split(",") if f))
    clips = test_clips(dataset_files(args.data)[args.split], settings)
    results = {"Input": evaluate(system_runner(None, settings.sample_rate), clips, settings)}
    for model_arg in args.models:
        model = _load_any(model_arg)
        if model is not None and getattr(model, "card", {}).get("cutoff_hz") not in (
                None, args.cutoff_hz):
            print(f"warning: {model_arg} was trained for cutoff {model.card['cutoff_hz']} Hz, "
                  f"evaluating at {args.cutoff_hz} Hz", file=sys.stderr)
        runner = system_runner(model, settings.sample_rate, args.whole, args.keep_below_hz)
        results[model_arg] = evaluate(runner, clips, settings)
        red = lsd_hf_reduction(results[model_arg], results["Input"])
        for f in red:
            results[model_arg][f]["lsd_hf_reduction"] = red[f]
    print(f"{len(clips)} test clips of up to {args.clip_seconds} s, cutoff {args.cutoff_hz} Hz, "
          f"{'whole-clip' if args.whole else 'streaming-window'} inference")
    print(format_table(results))
    for name, res in results.items():
        if name != "Input":
            print(f"{name}: LSD-HF reduction " + ", ".join(
                f"{f} {row['lsd_hf_reduction']:.1%}" for f, row in res.items()))
    if args.bands:
        print("\nerror energy per band, dB relative to the reference energy (lower is better)")
        print(format_band_table(results))
    if args.csv:
        write_csv(results, args.csv)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _split_clips(roots: list[str], split: str, clip_seconds: float, clips_per_root: int,
                 offset_seconds: float = 0.0) -> list:
    """``clip_seconds`` from ``offset_seconds`` on of up to ``clips_per_root`` files of
    ``split`` in each dataset (files shorter than offset + 1 s left out), as (samples,)
    float32 arrays."""
    from .data import dataset_files
    from .evaluate import EvalSettings, test_clips

    settings = EvalSettings(clip_seconds=clip_seconds, max_clips=clips_per_root,
                            clip_offset_seconds=offset_seconds)
    return [c for root in roots for c in test_clips(dataset_files(root)[split], settings)]


def _matrix_modes(args: argparse.Namespace) -> list:
    """The geometries ``eval --matrix`` runs: ``--modes`` (back to back, the first is the
    reference), else the one given by ``--window-ms/--hop-ms/--low-latency``."""
    from rtbwe.cli_process import model_options

    from .modes import mode_from_options, parse_mode

    if args.modes:
        if any(getattr(args, n, None) for n in ("window_ms", "hop_ms", "low_latency")):
            raise SystemExit("eval --matrix: --modes or --window-ms/--hop-ms/--low-latency, "
                             "not both")
        return [parse_mode(m) for m in args.modes]
    return [mode_from_options(model_options(args))]


def _eval_matrix(args: argparse.Namespace) -> int:
    """``eval --matrix``: every model on the degradation matrix (rtbwe.training.matrix), at
    one geometry or several (``--modes``, with per-row differences from the first)."""
    from rtbwe import BandwidthExtender

    from .matrix import evaluate_matrix, markdown_table
    from .modes import code_version, differences_markdown, row_differences, worst_difference_db

    modes = _matrix_modes(args)
    version = code_version(Path(__file__).resolve().parent.parent)
    clips = _split_clips([args.data, *args.extra_data], args.split, args.clip_seconds, args.clips,
                         args.clip_offset)
    print(f"degradation matrix: {len(clips)} {args.split} clips of up to {args.clip_seconds} s "
          f"{f'from {args.clip_offset} s into each file ' if args.clip_offset else ''}"
          f"from {', '.join([args.data, *args.extra_data])}; streaming BandwidthExtender path, "
          f"passband={args.passband!r}; code {version['commit']}"
          f"{' + modified ' + ', '.join(version['modified']) if version['modified'] else ''}",
          flush=True)
    tables, report, differences = [], {}, {}
    for model_arg in args.models:
        for mode in modes:
            key = model_arg if len(modes) == 1 else f"{model_arg} @ {mode.label}"
            start = time.perf_counter()
            bwe = BandwidthExtender(model_arg, num_threads=args.threads, passband=args.passband,
                                    keep_below_hz=args.keep_below_hz, **mode.options())
            results = evaluate_matrix(bwe, clips, progress=lambda m: print(f"  {key}: {m}",
                                                                           flush=True),
                                      skirt_oracle=args.skirt_oracle, stress=args.stress)
            report[key] = [r.as_dict() for r in results]
            oracle = (", the stress rows (training/stress.py)" if args.stress else
                      ", filter rows with the skirt oracle" if args.skirt_oracle else "")
            tables.append(markdown_table(results, f"{model_arg}{oracle} "
                                         f"(passband={args.passband}, "
                                         f"window/hop {mode.window_samples}/{mode.hop_samples}"
                                         f" samples, latency {mode.latency_ms:.2f} ms)"))
            print(f"  {key}: {time.perf_counter() - start:.0f} s", flush=True)
        if len(modes) > 1:
            reference = f"{model_arg} @ {modes[0].label}"
            for mode in modes[1:]:
                key = f"{model_arg} @ {mode.label}"
                differences[key] = row_differences(report[reference], report[key])
                tables.append(differences_markdown(reference, key, differences[key]))
                print(f"  {key}: largest |ΔSNR difference| "
                      f"{worst_difference_db(differences[key]):.2f} dB", flush=True)
    print("\n".join(tables))
    if args.json:
        out = {"clips": len(clips), "clip_seconds": args.clip_seconds,
               "clip_offset_seconds": args.clip_offset, "passband": args.passband,
               "data": [args.data, *args.extra_data],
               "threads": args.threads, "code": version, "skirt_oracle": args.skirt_oracle,
               "stress": args.stress,
               "modes": [m.as_dict() for m in modes], "results": report}
        if differences:
            out["differences"] = differences
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text("\n".join(tables))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_curves

    logs = {Path(r).name: Path(r) / "log.csv" for r in args.runs}
    print(plot_curves(logs, args.out))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Copy a run's best weights to STEM and add test metrics to the card."""
    from .data import dataset_files
    from .evaluate import EvalSettings, evaluate, lsd_hf_reduction, system_runner, test_clips
    from rtbwe.weights import load_model, save_model

    gate = None
    if args.rolloff_gate_db is not None:  # checked as the processor checks a card's
        from rtbwe.processor import rolloff_gate_db

        gate = rolloff_gate_db(args.rolloff_gate_db)
        if gate is None:
            raise SystemExit(f"--rolloff-gate-db FULL OFF: two finite dB values with FULL > "
                             f"OFF (e.g. -5 -9), got {args.rolloff_gate_db}")
    model = load_model(Path(args.run_dir) / "best.json")
    card = dict(model.card)
    card.pop("_card_path", None)
    if args.latest:  # the run's last checkpoint instead of its best validation
        import torch

        checkpoint = Path(args.run_dir) / "checkpoint.pt"
        if not checkpoint.is_file():
            raise SystemExit(f"--latest: {checkpoint} does not exist (has the run saved a "
                             "checkpoint yet?)")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        card["steps"] = int(state["step"])
        card["train_seconds"] = round(float(state["elapsed"]), 1)
        card["validation"] = {"note": f"the run's last checkpoint (step {state['step']}), "
                              "not its best validation"}
    if args.skirt_model:  # the learned skirt estimate the gains are fitted on top of
        from rtbwe.card_lock import skirt_model

        if skirt_model(args.skirt_model) is None or not args.skirt_eq:
            raise SystemExit(f"--skirt-model {args.skirt_model!r}: needs --skirt-eq and a "
                             "registered name (rtbwe.skirt_model.SKIRT_MODELS)")
        card["skirt_model"] = model.card["skirt_model"] = args.skirt_model
    if card.get("training", {}).get("degradations") == "wide":
        from .degrade import describe

        card.setdefault("degradations", describe())
    if args.calibrate:  # the lock's gains and level cap, fitted on the validation split
        from .calibrate import EXTEND_BELOW_HZ, fit_lock

        clips = _split_clips(args.calibrate, "validation", args.clip_seconds, args.clips)
        fit = fit_lock(model, clips, rolloff_gate_db=gate,
                       progress=lambda m: print(m, flush=True), skirt_eq=args.skirt_eq)
        card["extension_gain"] = fit["extension_gain"]
        card["skirt_eq"] = bool(args.skirt_eq)
        card["max_added_ratio"] = fit["max_added_ratio"]
        if gate is not None:
            card["rolloff_gate_db"] = list(gate)
        card["calibration"] = {**fit, "data": list(args.calibrate), "split": "validation",
                               "clips": len(clips), "clip_seconds": args.clip_seconds}
        chosen = next(c for c in fit["cross_validation"] if c["shrink"] == fit["shrink"])
        print(f"extension gains {fit['extension_gain']} (least squares x {fit['shrink']}, "
              f"at least {fit['gain_floor']} below {EXTEND_BELOW_HZ:.0f} Hz, 0 above), "
              f"max_added_ratio {fit['max_added_ratio']}, from {fit['pairs']} validation "
              f"pairs; cross-validated worst row {chosen['worst_row_db']:+.2f} dB, mean row "
              f"{chosen['mean_row_db']:+.3f} dB")
    if args.matrix_json:  # the degradation matrix (eval --matrix --json) of this model
        matrix = json.loads(Path(args.matrix_json).read_text())
        card["matrix"] = {"clips": matrix["clips"], "clip_seconds": matrix["clip_seconds"],
                          "data": matrix["data"], "passband": matrix["passband"],
                          "rows": next(iter(matrix["results"].values()))}
    if args.data:
        settings = EvalSettings(clip_seconds=args.clip_seconds, max_clips=args.clips,
                                cutoff_hz=card.get("cutoff_hz", 6000.0))
        clips = test_clips(dataset_files(args.data)["test"], settings)
        base = evaluate(system_runner(None, settings.sample_rate), clips, settings)
        res = evaluate(system_runner(model, settings.sample_rate), clips, settings)
        for f, r in lsd_hf_reduction(res, base).items():
            res[f]["lsd_hf_reduction"] = r
        card["test_metrics"] = {"model": res, "input": base,
                                "settings": {"clip_seconds": args.clip_seconds,
                                             "clips": len(clips), "path": "BandwidthExtender"}}
    path = save_model(model, args.stem, card)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rtbwe.cli_process import _add_model_options

    p = argparse.ArgumentParser(prog="rtbwe-train", description="Train and evaluate rtbwe models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command")
    b = data.add_parser("build", help="render the offline music21 + fluidsynth corpus")
    b.add_argument("out_dir", help="folder for the corpus (flac files per split + manifest)")
    b.add_argument("--max-pieces", type=int, default=200,
                   help="music21 scores to render (default 200)")
    b.add_argument("--max-seconds", type=float, default=40.0,
                   help="longest audio kept per piece, in seconds (default 40)")
    b.add_argument("--seed", type=int, default=0,
                   help="picks the pieces, instruments and the train/validation/test split")
    b.add_argument("--workers", type=int, default=2, help="parallel renderer processes")
    b.set_defaults(func=cmd_data_build)
    r = data.add_parser("real", help="real recordings from the Debian packages (drum kits, "
                        "game soundtracks), each track's own bandwidth measured")
    r.add_argument("out_dir", help="folder for the tracks (flac files per split + manifest)")
    r.add_argument("--max-seconds", type=float, default=60.0,
                   help="longest audio kept per soundtrack file or drum kit (default 60)")
    r.add_argument("--seed", type=int, default=0, help="the train/validation/test split")
    r.set_defaults(func=cmd_data_real)

    f = sub.add_parser("fit", help="train from a TOML config (resumes from its checkpoint)")
    f.add_argument("config", help="TOML file, e.g. training/configs/smoke.toml")
    f.add_argument("--run-dir", help="checkpoints, log.csv, best weights (default runs/NAME)")
    f.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from RUN_DIR/checkpoint.pt when present (default yes)")
    f.add_argument("--steps", type=int, help="training steps (overrides the config)")
    f.add_argument("--device", help="cpu or cuda (overrides the config)")
    f.add_argument("--data", help="corpus folder (overrides the config)")
    f.add_argument("--threads", type=int, help="torch CPU threads (overrides the config)")
    f.add_argument("--init-from", help="model card to warm-start from when there is no "
                   "checkpoint (e.g. rtbwe/weights/arunet-small-6k.json on a new machine)")
    f.set_defaults(func=cmd_fit)

    e = sub.add_parser("eval", help="SNR, ΔSNR, LSD, LSD-HF, ViSQOL on the test split")
    e.add_argument("models", nargs="*", default=["default"],
                   help="model names or card paths (the Input row is always included)")
    e.add_argument("--data", default="corpus/v1", help="corpus folder (default corpus/v1)")
    e.add_argument("--split", default="test", choices=["train", "validation", "test"],
                   help="which split's clips (default test)")
    e.add_argument("--cutoff-hz", type=float, default=6000.0,
                   help="low-pass cutoff of the test filters (default 6000)")
    e.add_argument("--clip-seconds", type=float, default=10.0,
                   help="seconds from the start of each piece (default 10)")
    e.add_argument("--clips", type=int, default=24, help="most clips to use (default 24)")
    e.add_argument("--clip-offset", type=float, default=0.0, metavar="SECONDS",
                   help="start each clip this many seconds into its file (default 0; files "
                   "too short for a 1 s clip there are left out)")
    e.add_argument("--whole", action="store_true", help="run the network over whole clips")
    e.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (the slow metric)")
    e.add_argument("--bands", action="store_true",
                   help="also print where the error lies: error energy per frequency band")
    e.add_argument("--extra-filters", default="",
                   help="comma-separated extra held-out filters FAMILY-ORDER, e.g. "
                   "butter-4,butter-8 (rows named after the filter)")
    e.add_argument("--keep-below-hz", type=float, default=None,
                   help="evaluate with the passband locked below this frequency "
                   "(rtbwe process --keep-below-hz)")
    e.add_argument("--vggish-weights", help="torchvggish state dict: adds the paper's VGGish "
                   "distance")
    e.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    _add_model_options(e)  # --window-ms, --hop-ms, --low-latency: the geometry of --matrix
    e.add_argument("--matrix", action="store_true",
                   help="the degradation matrix (full band, filters at 3.5-14 kHz, resamplers, "
                   "MP3, GSM) through BandwidthExtender, instead of the filter table")
    e.add_argument("--extra-data", nargs="*", default=[],
                   help="with --matrix: more datasets whose split joins the clips "
                   "(e.g. corpus/real)")
    e.add_argument("--passband", default="detected", choices=["detected", "free"],
                   help="with --matrix: the processor's passband mode (default detected)")
    e.add_argument("--markdown", help="with --matrix: also write the tables to this file")
    e.add_argument("--stress", action="store_true",
                   help="with --matrix: the stress rows instead of the issue's (training/stress.py: "
                   "causal and other filters, hiss, quiet input, shelves, pedalboard resamplers "
                   "and MP3 VBR, clipping)")
    e.add_argument("--skirt-oracle", action="store_true",
                   help="with --matrix: boost each filter row's skirt by its known filter's "
                   "inverse (training/skirt_oracle.py): what an exact skirt estimate would give")
    e.add_argument("--modes", nargs="+", metavar="MODE",
                   help="with --matrix: run these geometries back to back on the same clips "
                   "and tabulate each one's difference from the first: default, hop-1/2, "
                   "hop-3/4, low-latency or WINDOW/HOP samples at 48 kHz (training/modes.py)")
    e.add_argument("--csv", help="also write the table to this CSV file")
    e.add_argument("--json", help="also write all results to this JSON file")
    e.set_defaults(func=cmd_eval)

    pl = sub.add_parser("plot", help="validation curves of runs as a PNG (Fig. 2 style)")
    pl.add_argument("runs", nargs="+", help="run folders (each holds a log.csv)")
    pl.add_argument("--out", default="curves.png", help="PNG to write (default curves.png)")
    pl.set_defaults(func=cmd_plot)

    x = sub.add_parser("export", help="copy a run's best weights with test metrics in the card")
    x.add_argument("run_dir", help="run folder holding best.json / best.safetensors")
    x.add_argument("stem", help="output path without suffix, e.g. rtbwe/weights/arunet-small-6k")
    x.add_argument("--data", help="corpus for test metrics (skipped when absent)")
    x.add_argument("--calibrate", nargs="+", metavar="DATA",
                   help="fit the card's extension_gain on these datasets' validation split "
                   "(training/calibrate.py)")
    x.add_argument("--latest", action="store_true",
                   help="export the run's last checkpoint (checkpoint.pt) instead of best.json's "
                   "weights")
    x.add_argument("--rolloff-gate-db", nargs=2, type=float, metavar=("FULL", "OFF"),
                   help="with --calibrate: turn on the lock's roll-off gate (gain 1 down to "
                   "FULL dB per octave, 0 from OFF, e.g. -5 -9; off by default) and fit with it")
    x.add_argument("--skirt-eq", action="store_true",
                   help="with --calibrate: the lock also boosts a gentle filter's skirt "
                   "(rtbwe/skirt.py; the card's skirt_eq), and the gains are fitted with it")
    x.add_argument("--skirt-model", help="with --skirt-eq: the boost's learned estimate "
                   "(rtbwe/skirt_model.py, e.g. skirt-mlp; the card's skirt_model)")
    x.add_argument("--matrix-json", help="an `eval --matrix --json` file of this model, "
                   "copied into the card")
    x.add_argument("--clip-seconds", type=float, default=10.0,
                   help="seconds per test clip (default 10)")
    x.add_argument("--clips", type=int, default=24, help="most test clips (default 24)")
    x.set_defaults(func=cmd_export)

    from .calibrate_scaled import register as register_scaled
    from .skirt_fit import register as register_skirt

    register_skirt(sub)
    register_scaled(sub)
    try:
        from .reproduce import register
    except ModuleNotFoundError:
        pass
    else:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
