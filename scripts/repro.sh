#!/usr/bin/env bash
# The main job: install what is missing, then `surgvqa repro`: check params.yaml, make sure data/raw exists
# (pulled from the DVC remote if one is configured, else the embedded sample generated) and is what data.dvc
# records, run the whole pipeline with `dvc repro`, and fail when the release gate failed (`surgvqa check-gate`).
# Extra arguments go to `dvc repro` (for example a stage name, or --force); a stage name skips the gate check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1
exec surgvqa repro "$@"
