#!/usr/bin/env bash
# A team's MLflow tracking server: runs, tags, metrics and the model registry (the `champion` alias) in
# PostgreSQL, artifacts (adapters, reports, merged models) under their own root, never in the database.
#
#   # once, as PostgreSQL's admin: a user and a database owned by it
#   sudo -u postgres createuser --pwprompt surgvqa
#   sudo -u postgres createdb --owner surgvqa surgvqa_mlflow
#   .venv/bin/pip install -e '.[postgres]'          # psycopg 3 (SQLAlchemy's postgresql://), boto3 (s3://)
#   # the server (the password in ~/.pgpass, "host:port:db:user:password", mode 0600, not in the URI)
#   export SURGVQA_BACKEND_STORE_URI=postgresql://surgvqa@db.internal:5432/surgvqa_mlflow
#   bash scripts/tracking_server.sh --artifacts-destination s3://team-bucket/surgvqa   # or a directory
#   # every checkout that should log there (on other machines: the reverse proxy's https:// address)
#   export SURGVQA_TRACKING_URI=http://127.0.0.1:5000
#
# Options: --backend-store-uri URI (else SURGVQA_BACKEND_STORE_URI), --artifacts-destination PATH|URI (else
# SURGVQA_ARTIFACTS_DESTINATION), --host (127.0.0.1), --port (5000); any other argument goes to `mlflow server`
# (e.g. --workers 2; MLflow's default is 4, each worker with a pool of up to 15 PostgreSQL connections). An empty database
# gets MLflow's tables when the server starts; after upgrading MLflow, back the database up and run
# `mlflow db upgrade URI` first (the server refuses an older schema, saying so).
set -euo pipefail
usage="usage: bash scripts/tracking_server.sh --backend-store-uri postgresql://USER@HOST:PORT/DB \
--artifacts-destination PATH|s3://BUCKET/PREFIX [--host 127.0.0.1] [--port 5000] [MLFLOW SERVER OPTIONS...]"
backend=${SURGVQA_BACKEND_STORE_URI:-}
artifacts=${SURGVQA_ARTIFACTS_DESTINATION:-}
# 127.0.0.1: the server has no authentication of its own, so it answers this machine only. Other machines reach
# it through the team's reverse proxy (TLS and logins) or an SSH tunnel; `--host 0.0.0.0` is that choice, made
# explicitly (then also `--allowed-hosts NAME`, the Host header the proxy sends: MLflow refuses other names).
host=127.0.0.1
port=5000
passed=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --backend-store-uri | --artifacts-destination | --host | --port)
      if [ "$#" -lt 2 ]; then echo "$usage" >&2; exit 2; fi
      case "$1" in
        --backend-store-uri) backend=$2 ;;
        --artifacts-destination) artifacts=$2 ;;
        --host) host=$2 ;;
        --port) port=$2 ;;
      esac
      shift 2 ;;
    *) passed+=("$1"); shift ;;
  esac
done
if [ -z "$backend" ] || [ -z "$artifacts" ]; then echo "$usage" >&2; exit 2; fi
case "$backend" in
  postgresql://* | postgresql+psycopg://*) ;;
  *) echo "tracking_server: the backend store must be a postgresql:// URI, got '${backend%%://*}://...'" >&2
     exit 2 ;;
esac
case "$artifacts" in
  *://*) ;;
  # A directory: absolute before the cd below, so a relative path means the caller's directory.
  *) mkdir -p "$artifacts" && artifacts=$(cd "$artifacts" && pwd) ;;
esac
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "tracking_server: no .venv here: run bash scripts/setup.sh first" >&2
  exit 1
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if ! import_error=$(python -c "import psycopg" 2>&1); then
  echo "tracking_server: psycopg is not importable (${import_error##*$'\n'}); install it with:" >&2
  echo "  .venv/bin/pip install -e '.[postgres]'" >&2
  exit 1
fi
# The server itself stores the artifacts (clients upload through it), so it alone needs S3's client library.
if [[ "$artifacts" == s3://* ]] && ! python -c "import boto3" 2>/dev/null; then
  echo "tracking_server: an s3:// artifact root needs boto3; install it with: .venv/bin/pip install -e '.[postgres]'" >&2
  exit 1
fi
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
# MLflow's job runner (seven huey worker processes) serves GenAI features (scorers, prompt optimisation, trace
# rollups) this project does not use; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it back on.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
# Through MLflow's own variable, not an argument: `ps` shows every user an argument, a URI's password with it.
export MLFLOW_BACKEND_STORE_URI=$backend
exec mlflow server --artifacts-destination "$artifacts" --host "$host" --port "$port" ${passed[@]+"${passed[@]}"}  # (an empty array under set -u, bash < 4.4)
