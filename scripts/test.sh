#!/usr/bin/env bash
# The test suite (what CI runs). Does all set-up first. GPU tests skip without CUDA; JACK
# tests start their own jackd (installed by setup.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/.numba-cache}
exec "$PY" -m pytest -q -p no:cacheprovider tests "$@"
