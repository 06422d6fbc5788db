#!/usr/bin/env bash
# The main job: extend the bundled clip with the bundled default model, write a wav and a
# spectrogram PNG to demo-out/, print quality and the RT factor. Does all set-up first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec "$PY" -m rtbwe demo --out demo-out "$@"
