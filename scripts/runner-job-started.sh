#!/usr/bin/env bash
# The GPU runner's own lock against fork code: a job-started hook, installed on the runner machine outside any
# checkout, that GitHub's runner executes before every job (README "CI/CD", registering the GPU runner):
#
#   sudo install -D -m 755 scripts/runner-job-started.sh /opt/surgvqa-runner/job-started.sh   # from main
#   echo ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/surgvqa-runner/job-started.sh >> ~/actions-runner/.env
#
# Why it exists beside the workflow's `if`: for a pull request GitHub runs the workflow file of the pull
# request itself, so a fork could delete that `if` or add a workflow of its own that asks for this runner. This
# file lives on the runner's disk, where no pull request can edit it. A non-zero exit fails the job before any
# of its steps run. It allows pushes, manual dispatches and pull requests whose head is this repository.
set -euo pipefail
event_name=${GITHUB_EVENT_NAME:?the runner sets GITHUB_EVENT_NAME}
repository=${GITHUB_REPOSITORY:?the runner sets GITHUB_REPOSITORY}
event_path=${GITHUB_EVENT_PATH:?the runner sets GITHUB_EVENT_PATH}
case "$event_name" in
  push|workflow_dispatch) exit 0 ;;
  pull_request) ;;
  *) echo "surgvqa runner: refusing a '$event_name' job: only push, workflow_dispatch and pull_request from $repository run here" >&2
     exit 1 ;;
esac
head=$(python3 -c 'import json, sys
event = json.load(open(sys.argv[1]))
head = ((event.get("pull_request") or {}).get("head") or {}).get("repo") or {}
print(head.get("full_name") or "")' "$event_path")
if [ "${head,,}" != "${repository,,}" ]; then
  echo "surgvqa runner: refusing a pull request from '${head:-an unknown repository}': only branches of $repository run here" >&2
  exit 1
fi
