"""scripts/runner-job-started.sh, the GPU runner's job-started hook: it refuses fork pull requests (and any event
but push, dispatch and pull request) before a job's steps run, whatever the pull request's workflow says."""

import json
import subprocess

import pytest

REPOSITORY = "surgvqa/surgvqa"


def _hook(repo, tmp_path, event_name: str, event: dict) -> subprocess.CompletedProcess:
    (tmp_path / "event.json").write_text(json.dumps(event))
    env = {"PATH": "/usr/bin:/bin", "GITHUB_EVENT_NAME": event_name, "GITHUB_REPOSITORY": REPOSITORY,
           "GITHUB_EVENT_PATH": str(tmp_path / "event.json")}
    return subprocess.run(["bash", str(repo / "scripts" / "runner-job-started.sh")], env=env, capture_output=True,
                          text=True)


def _pull_request(head_repo: str | None) -> dict:
    return {"pull_request": {"head": {"repo": {"full_name": head_repo} if head_repo else None}}}


@pytest.mark.parametrize(("event_name", "event", "allowed"), [
    ("push", {}, True),
    ("workflow_dispatch", {}, True),
    ("pull_request", _pull_request(REPOSITORY), True),
    ("pull_request", _pull_request("SurgVQA/SurgVQA"), True),  # GitHub names are case-insensitive
    ("pull_request", _pull_request("mallory/surgvqa"), False),
    ("pull_request", _pull_request(None), False),  # the fork was deleted: head.repo is null
    ("pull_request_target", _pull_request(REPOSITORY), False),
    ("issue_comment", {}, False),
    ("workflow_run", {}, False),
])
def test_only_this_repositorys_code_reaches_the_runner(repo, tmp_path, event_name, event, allowed):
    done = _hook(repo, tmp_path, event_name, event)
    assert (done.returncode == 0) == allowed, done.stderr
    if not allowed:
        assert done.stderr.startswith("surgvqa runner: refusing")
