"""Benchmarks (pytest-benchmark), not collected by CI (``pytest tests``). Run with

    pytest benchmarks --benchmark-columns=median,max          # everything (~10 min, 2 cores)
    pytest benchmarks -k "arunet-small and eager"             # a slice

Each benchmark also stores its headline figures (p50/p99 ms, RT factor, latency ms,
speed-up, edge error dB) in ``extra_info``; they are printed as a table at the end and are
what benchmarks/README.md records. ``rtbwe bench`` prints the same streaming figures.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS: list[dict] = []


@pytest.fixture
def record(benchmark):
    """``record(**figures)``: attach figures to the benchmark and to the final table."""
    def _record(**figures):
        benchmark.extra_info.update(figures)
        RESULTS.append({"name": benchmark.name, **figures})
    return _record


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("rtbwe figures")
    for row in RESULTS:
        figures = "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in row.items() if k != "name")
        terminalreporter.write_line(f"{row['name']}: {figures}")
    out = Path(__file__).with_name("last_results.json")
    merged = {row["name"]: row for row in json.loads(out.read_text())} if out.exists() else {}
    merged.update({row["name"]: row for row in RESULTS})  # a partial run updates its own rows
    out.write_text(json.dumps(list(merged.values()), indent=1) + "\n")
    terminalreporter.write_line(f"updated {len(RESULTS)} rows of {out}")
