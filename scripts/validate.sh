#!/usr/bin/env bash
# Validation of one profile, as CI runs it: CPU CI with `embedded` on every push, the self-hosted GPU runner
# with `gpu` (.github/workflows/). Steps: install; make PROFILE active (params.yaml and data.dvc); with a DVC
# remote, pull the profile's data, and in `dvc repro --pull` DVC's run cache (stages already run with these
# exact inputs are restored, not rerun); the whole pipeline and the release gate (scripts/repro.sh); the
# comparison table and the gate report into the job summary; with --promote, `surgvqa promote` and (with a
# remote) push what was built.
#
#   bash scripts/validate.sh PROFILE [--promote]
#
# Environment (all optional): DVC_REMOTE_URL, a DVC remote to pull from and push to (its credentials in the
# variables its kind reads, e.g. AWS_ACCESS_KEY_ID); SURGVQA_TRACKING_URI, an MLflow server for runs and the
# registry (credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD); GITHUB_STEP_SUMMARY, where the
# summary goes (default: reports/summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash scripts/validate.sh PROFILE [--promote]"
profile=${1:?$usage}
promote=false
case "${2:-}" in
  "") ;;
  --promote) promote=true ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
if [ "$#" -gt 2 ]; then echo "$usage" >&2; exit 2; fi
if [ "$promote" = true ] && [ -z "${SURGVQA_TRACKING_URI:-}" ]; then
  # Promoting into a store on the runner's own disk would move a `champion` nobody else can see.
  echo "validate: --promote needs SURGVQA_TRACKING_URI (the shared MLflow server; a CI secret)" >&2
  exit 2
fi
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1
if [ -n "${DVC_REMOTE_URL:-}" ]; then
  # --local: the address stays in .dvc/config.local, out of git and out of the job's diff.
  dvc remote add --local --force --default ci "$DVC_REMOTE_URL"
fi
surgvqa profile use "$profile"
remote=$(dvc remote default 2>/dev/null) || remote=""   # it prints "No default remote set" and exits 1
if [ -n "$remote" ]; then
  # The rest comes with `surgvqa repro` (scripts/repro.sh), which runs `dvc repro --pull` when a remote is
  # configured: it fetches the remote's run cache (a record of every stage run pushed before, keyed by its deps,
  # params and command), then pulls the outputs of each stage that is unchanged or has a record instead of
  # running it; a stage nobody ran with these inputs yet is simply run.
  echo "validate: pulling profile $profile's data from DVC remote $remote; the run cache and stage outputs follow"
  dvc pull data.dvc
fi
status=0
bash scripts/repro.sh || status=$?
# GitHub gives each step its own summary file to append to; locally the summary is rewritten each run.
summary=${GITHUB_STEP_SUMMARY:-reports/summary.md}
if [ -z "${GITHUB_STEP_SUMMARY:-}" ]; then mkdir -p reports && : > "$summary"; fi
surgvqa summary >> "$summary" || status=$((status ? status : 1))
echo "validate: summary written to $summary"
if [ "$status" -ne 0 ]; then
  echo "validate: profile $profile FAILED (exit $status); nothing was promoted" >&2
  exit "$status"
fi
if [ "$promote" = true ]; then
  surgvqa promote
  # Only a promoting run (main) writes to the remote: what a later run restores from the run cache must come
  # from main's code, never from a pull request's.
  if [ -n "$remote" ]; then
    dvc push --run-cache
  fi
fi
echo "validate: profile $profile passed"
