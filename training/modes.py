"""Streaming geometries ("modes") on the degradation matrix: which window / hop each run used,
and how far each mode's rows are from the first (reference) mode's.

``rtbwe-train eval default --matrix --modes default hop-3/4 low-latency`` runs every mode
back to back on the same clips in one process (one code version, one setup) and writes, next
to each mode's own table, a table of per-row differences from the first mode.

A mode is a name or ``WINDOW/HOP`` in samples at 48 kHz:

* ``default``: the processor's default geometry (1024 / 768 samples, 21.33 / 16 ms, since
  issue 14; 1024 / 512 before);
* ``hop-1/2``, ``hop-3/4``: the default window with a hop of 1/2 or 3/4 of it (1024 / 512,
  1024 / 768);
* ``low-latency``: ``rtbwe.processor.LOW_LATENCY_WINDOW_MS / HOP_MS`` (448 / 224);
* ``W/H``, e.g. ``960/480``.
"""
from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 48000  # the sample counts of a mode are at this rate (ms are what the processor takes)


@dataclass(frozen=True)
class Mode:
    label: str
    window_samples: int  # at RATE_HZ
    hop_samples: int     # at RATE_HZ

    @property
    def window_ms(self) -> float:
        return 1000 * self.window_samples / RATE_HZ

    @property
    def hop_ms(self) -> float:
        return 1000 * self.hop_samples / RATE_HZ

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency, window - 1 samples (rtbwe/streaming.py)."""
        return 1000 * (self.window_samples - 1) / RATE_HZ

    def options(self) -> dict[str, float]:
        """``BandwidthExtender`` keyword arguments."""
        return {"window_ms": self.window_ms, "hop_ms": self.hop_ms}

    def as_dict(self) -> dict:
        return {"label": self.label, "window_samples": self.window_samples,
                "hop_samples": self.hop_samples, "latency_ms": round(self.latency_ms, 3)}


def parse_mode(spec: str) -> Mode:
    """A mode name (``default``, ``hop-3/4``, ``low-latency``) or ``WINDOW/HOP`` samples."""
    from rtbwe import processor

    default_window = round(processor.DEFAULT_WINDOW_MS * RATE_HZ / 1000)
    named = {
        "default": (default_window, round(processor.DEFAULT_HOP_MS * RATE_HZ / 1000)),
        "hop-1/2": (default_window, default_window // 2),
        "hop-3/4": (default_window, default_window * 3 // 4),
        "low-latency": (round(processor.LOW_LATENCY_WINDOW_MS * RATE_HZ / 1000),
                        round(processor.LOW_LATENCY_HOP_MS * RATE_HZ / 1000)),
    }
    if spec in named:
        window, hop = named[spec]
        return Mode(f"{spec} ({window}/{hop})", window, hop)
    try:
        window, hop = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"mode {spec!r}: a name ({', '.join(named)}) or WINDOW/HOP in "
                         "samples at 48 kHz, e.g. 960/480") from None
    if not 0 < hop <= window:
        raise ValueError(f"mode {spec!r}: need 0 < HOP <= WINDOW")
    return Mode(f"{window}/{hop}", window, hop)


def mode_from_options(options: dict[str, float]) -> Mode:
    """The mode of a single run from its ``window_ms`` / ``hop_ms`` (processor defaults where
    absent)."""
    from rtbwe import processor

    window = round(options.get("window_ms", processor.DEFAULT_WINDOW_MS) * RATE_HZ / 1000)
    hop = round(options.get("hop_ms", processor.DEFAULT_HOP_MS) * RATE_HZ / 1000)
    return Mode(f"{window}/{hop}", window, hop)


def row_differences(reference: list[dict], other: list[dict]) -> list[dict]:
    """Per matrix row (``RowResult.as_dict()`` lists, same row names): the other mode's ΔSNR
    minus the reference's, in dB, and the same for the fraction of clips worse. The full-band
    row's "ΔSNR" is its output-vs-input SNR (about 150 dB), so its difference is reported but
    is not a quality difference."""
    ref = {r["name"]: r for r in reference}
    rows = []
    for r in other:
        base = ref[r["name"]]
        rows.append({"name": r["name"], "dsnr_ref_db": base["dsnr_db"], "dsnr_db": r["dsnr_db"],
                     "diff_db": r["dsnr_db"] - base["dsnr_db"],
                     "worse_diff": r["worse_fraction"] - base["worse_fraction"],
                     "clips": r["clips"]})
    return rows


def worst_difference_db(differences: list[dict]) -> float:
    """The largest |ΔSNR difference| over the rows other than full band (NaN rows skipped)."""
    values = [abs(d["diff_db"]) for d in differences
              if d["name"] != "full band" and not math.isnan(d["diff_db"])]
    return max(values) if values else float("nan")


def differences_markdown(reference_label: str, label: str, differences: list[dict],
                         tolerance_db: float = 0.2) -> str:
    """A table: row, reference ΔSNR, this mode's ΔSNR, difference, within ``tolerance_db``."""
    lines = [f"### {label} minus {reference_label}", "",
             "| input | clips | ΔSNR reference (dB) | ΔSNR this mode (dB) | difference (dB) | "
             f"within {tolerance_db} dB | clips worse, difference |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for d in differences:
        full = d["name"] == "full band"
        within = ("(out vs in SNR)" if full else
                  "—" if math.isnan(d["diff_db"]) else
                  "yes" if abs(d["diff_db"]) <= tolerance_db else "**no**")
        lines.append(f"| {d['name']} | {d['clips']} | {d['dsnr_ref_db']:+.2f} | "
                     f"{d['dsnr_db']:+.2f} | {d['diff_db']:+.2f} | {within} | "
                     f"{d['worse_diff']:+.0%} |")
    lines.append("")
    lines.append(f"Largest |difference| over the filtered, resampled and coded rows: "
                 f"{worst_difference_db(differences):.2f} dB.")
    return "\n".join(lines) + "\n"


def code_version(root: str | Path = ".") -> dict:
    """The HEAD commit the run used and the tracked files that differed from it (other
    people's work in progress changes results too, so it is recorded)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "modified": []}
    return {"commit": head, "modified": sorted(line[3:] for line in status.splitlines())}


def ship_failures(reference: list[dict], other: list[dict], tolerance_db: float = 0.2
                  ) -> list[str]:
    """Why ``other`` may not replace ``reference`` (empty: it may): a row more than
    ``tolerance_db`` below the reference's ΔSNR, or a row with clips made worse where the
    reference made none worse. The full-band row counts only through its "worse" fraction
    (output less than 40 dB from its input)."""
    failures = []
    ref = {r["name"]: r for r in reference}
    for d, r in zip(row_differences(reference, other), other):
        if d["name"] != "full band" and d["diff_db"] < -tolerance_db:
            failures.append(f"{d['name']}: ΔSNR {d['diff_db']:+.2f} dB")
        if ref[r["name"]]["worse_fraction"] == 0 and r["worse_fraction"] > 0:
            failures.append(f"{d['name']}: {r['worse_fraction']:.0%} of clips worse (reference "
                            "none)")
    return failures


def _rows(path: str, key: str | None) -> tuple[str, list[dict]]:
    import json

    results = json.loads(Path(path).read_text())["results"]
    key = key or next(iter(results))
    return key, results[key]


def main(argv: list[str] | None = None) -> int:
    """``python -m training.modes compare REF.json OTHER.json [--ref-key K] [--key K]``: the
    per-row differences of two ``eval --matrix --json`` results (e.g. a student against the
    default model) and whether the other may replace the reference."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m training.modes")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="per-row differences of two matrix JSON files")
    c.add_argument("reference")
    c.add_argument("other")
    c.add_argument("--ref-key", help="the results entry of the reference (default: its first)")
    c.add_argument("--key", help="the results entry of the other (default: its first)")
    c.add_argument("--tolerance-db", type=float, default=0.2)
    c.add_argument("--markdown", help="append the table to this file")
    args = p.parse_args(argv)
    ref_key, ref = _rows(args.reference, args.ref_key)
    key, rows = _rows(args.other, args.key)
    table = differences_markdown(ref_key, key, row_differences(ref, rows), args.tolerance_db)
    failures = ship_failures(ref, rows, args.tolerance_db)
    table += ("\nMay replace the reference: " + ("yes" if not failures else
              "no (" + "; ".join(failures) + ")") + "\n")
    print(table)
    if args.markdown:
        with open(args.markdown, "a") as fh:
            fh.write("\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
