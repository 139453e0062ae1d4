#!/usr/bin/env bash
# Install smoke (`make install-smoke`, run by .ci/run): the package as a user gets it from `pip install .`.
# Builds a wheel from a copy of the package files, installs it with nothing but its declared dependencies into
# a fresh venv (no requirements.txt, no system site-packages; torch/torchvision first, pinned as in the
# Makefile), then runs .ci/install_smoke.py from a temporary folder so that `helpers` comes from the wheel.
# Variables: PYTHON (the interpreter for the venv), TORCH_PKGS, DATA_ROOT (the smoke reads a MedMNIST flag).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_PKGS=${TORCH_PKGS:-torch==2.14.1 torchvision==0.29.1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
# build outside the work tree: an in-tree build leaves build/ behind, whose stale modules a later wheel would ship
mkdir "$work/src"
cp -r pyproject.toml README.md helpers "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --quiet --no-deps "$work/src" -w "$work/dist"
wheel=$(ls "$work"/dist/helpers-*.whl)
echo "[install-smoke] built $(basename "$wheel") at $((SECONDS - start)) s"
"$PYTHON" -m venv "$work/venv"
# shellcheck disable=SC2086  # TORCH_PKGS is a list of requirements
"$work/venv/bin/python" -m pip install --quiet $TORCH_PKGS
echo "[install-smoke] torch installed at $((SECONDS - start)) s"
"$work/venv/bin/python" -m pip install --quiet "$wheel"
echo "[install-smoke] wheel and its dependencies installed at $((SECONDS - start)) s"
cp .ci/install_smoke.py "$work/"
(cd "$work" && "$work/venv/bin/python" install_smoke.py)
echo "[install-smoke] passed in $((SECONDS - start)) s"
