#!/usr/bin/env bash
# Lint: Python with ruff (rules in pyproject.toml), the GitHub workflows with actionlint (runner labels in
# .github/actionlint.yaml) and zizmor's security audits (auditor persona: every finding, each one fixed or
# justified in the workflow). All three are pinned dev dependencies and run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check src tests bench
actionlint -config-file .github/actionlint.yaml
zizmor --offline --persona auditor --no-progress .github/workflows
echo "lint: clean"
