#!/usr/bin/env bash
# One-shot set-up on Debian with Python 3.11: apt packages, torch 2.13.0 (CPU), rtbwe.
# Sourced by scripts/demo.sh and scripts/test.sh; exports $PY, the python to use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(libportaudio2 jackd2 libsndfile1 fluidsynth fluid-soundfont-gm gcc
              musescore-general-soundfont python3-venv
              # real recordings for the training corpus (rtbwe-train data real; about 0.6 GB)
              hydrogen-drumkits hydrogen-drumkits-effects hyperrogue-music nexuiz-music
              warzone2100-music planetblupi-music-ogg drascula-music)

missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "rtbwe setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "rtbwe setup: missing Debian packages; install them with:"
    echo "  sudo apt-get install -y ${missing[*]}"
    echo "(continuing: live-audio, JACK and corpus tests will skip without them)"
  fi
fi

# Use the active venv, else this python if pip may install into it, else ./.venv.
PY=${PYTHON:-python3}
if [[ -z "${VIRTUAL_ENV:-}" ]] && "$PY" - <<'PYEOF'
import sys, sysconfig, pathlib
sys.exit(0 if (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists() else 1)
PYEOF
then
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  PY=$PWD/.venv/bin/python
fi
export PY

pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
# torch first and pinned: any other version pulls GBs of CUDA wheels.
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "rtbwe setup: pip install torch==2.13.0"
  pip_install torch==2.13.0
fi
if ! "$PY" -c "import rtbwe, pytest, hypothesis, visqol, music21, mido, soxr, ray.data, onnxruntime, onnx" \
     2>/dev/null \
   || [[ pyproject.toml -nt .rtbwe-installed ]]; then
  echo "rtbwe setup: pip install -e .[dev,visqol,train,cluster,fast]"
  pip_install -e ".[dev,visqol,train,cluster,fast]"
  touch .rtbwe-installed
fi
