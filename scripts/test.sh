#!/usr/bin/env bash
# The test suite: install what is missing, then run pytest (no network, tiny configs).
# Extra arguments go to pytest (for example -k ingest, or -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# System packages some tests need, installed with apt when missing and apt may be used (root, or passwordless
# sudo); otherwise, or when installing fails, those tests skip, saying why.
# - chromium: the UI tests (tests/test_mlflow_ui.py, tests/evaluate/test_plots_offline.py) drive the system's
#   browser with Playwright, never a browser Playwright downloads: Debian's chromium, else chromium or
#   google-chrome on PATH (GitHub's ubuntu-latest has google-chrome).
# - postgresql: the team tracking server tests (tests/test_tracking_server.py) start a PostgreSQL cluster of their
#   own (never the system's) with Debian's binaries in /usr/lib/postgresql/VERSION/bin, else initdb on PATH.
missing=()
if [ ! -x /usr/bin/chromium ] && ! command -v chromium > /dev/null && ! command -v google-chrome > /dev/null; then
  missing+=(chromium)
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null && ! command -v initdb > /dev/null; then
  missing+=(postgresql)
fi
apt_install() {
  if [ "$#" -eq 0 ]; then return 0; fi
  local sudo="" package
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then sudo="sudo -n"; else
      echo "test.sh: no $*, and no root or passwordless sudo to install it: the tests that need it will skip"
      return 0
    fi
  fi
  if ! command -v apt-get > /dev/null; then
    echo "test.sh: no $*, and no apt-get to install it: the tests that need it will skip"
    return 0
  fi
  echo "test.sh: installing Debian's $* for the tests that need it (apt-get)"
  if ! $sudo apt-get update -qq; then
    echo "test.sh: apt-get update failed: the tests that need $* will skip"
    return 0
  fi
  for package in "$@"; do  # one at a time: a package that fails to install leaves the others' tests running
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" > /dev/null ||
      echo "test.sh: installing $package failed: the tests that need it will skip"
  done
}
apt_install "${missing[@]}"
# shellcheck disable=SC1091
. .venv/bin/activate
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python -m pytest "$@"
