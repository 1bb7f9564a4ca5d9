#!/usr/bin/env bash
# Install what the project needs into .venv (idempotent: a no-op when pyproject.toml has not changed).
# torch goes first, on its own: `torch==2.13.0` is the CPU wheel on a CPU machine and the CUDA build on a
# GPU runner; installing it before the rest stops any other package from pulling a different build.
# TORCH_INDEX_URL, when set, says where that wheel comes from (CI points it at the CPU-only index).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.surgvqa-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing torch==2.13.0, then the project and its pinned dependencies (a few minutes, once)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
