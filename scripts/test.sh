#!/usr/bin/env bash
# The test suite: install what is missing, then run pytest (no network, tiny configs).
# Extra arguments go to pytest (for example -k ingest, or -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The UI tests (tests/test_mlflow_ui.py, tests/evaluate/test_plots_offline.py) drive the system's browser with
# Playwright, never a browser Playwright downloads: Debian's chromium, else chromium or google-chrome on PATH
# (GitHub's ubuntu-latest has google-chrome). Installed with apt when none is there and apt may be used (root,
# or passwordless sudo); otherwise those tests skip, saying why.
install_browser() {
  if [ -x /usr/bin/chromium ] || command -v chromium > /dev/null || command -v google-chrome > /dev/null; then
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then sudo="sudo -n"; else
      echo "test.sh: no chromium and no root or passwordless sudo to install it: the browser tests will skip"
      return 0
    fi
  fi
  if ! command -v apt-get > /dev/null; then
    echo "test.sh: no chromium and no apt-get to install it: the browser tests will skip"
    return 0
  fi
  echo "test.sh: installing Debian's chromium for the browser tests (apt-get)"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null ||
    echo "test.sh: installing chromium failed: the browser tests will skip"
}
install_browser
# shellcheck disable=SC1091
. .venv/bin/activate
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python -m pytest "$@"
