#!/usr/bin/env bash
# RT factor of the shipped default model with 1 and 2 torch threads, first as the machine is,
# then with two busy-loop processes competing for the cores (the load that made the default of
# 2 threads collapse, issue 12). Prints the machine, its load average and both tables.
#   bash scripts/bench_threads.sh [seconds of audio per setting, default 3]
set -euo pipefail
SECONDS_PER_SETTING="${1:-3}"
PY="${PY:-python}"
bench() { "$PY" -m rtbwe bench --backends eager torchscript --threads 1 2 \
    --seconds "$SECONDS_PER_SETTING" | sed -n '1,9p'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== as is: load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench
spinners=()
cleanup() { for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in 1 2; do "$PY" -c 'while 1: pass' & spinners+=("$!"); done
sleep 2
echo "== with 2 busy-loop processes: load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench
