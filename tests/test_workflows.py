"""The GitHub workflows: lint clean (actionlint, zizmor) and safe by construction - no fork pull request reaches
the self-hosted GPU runner, no `pull_request_target`, read-only permissions, timeouts, no event text in `run:`."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
WORKFLOW_DIR = Path(__file__).resolve().parents[1] / ".github" / "workflows"
WORKFLOWS = tuple(sorted(p.name for p in WORKFLOW_DIR.glob("*.y*ml")))  # every workflow, present and future
OWNER_REPO = "surgvqa/surgvqa"


def _load(repo: Path, name: str) -> dict:
    workflow = yaml.safe_load((repo / ".github" / "workflows" / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN))
    assert path, f"{name} is not installed beside {sys.executable}: it is a pinned dev dependency (pyproject.toml)"
    return path


def test_actionlint_is_clean_with_the_runner_labels_declared(repo):
    done = subprocess.run([_tool("actionlint"), "-config-file", ".github/actionlint.yaml"], cwd=repo,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    labels = yaml.safe_load((repo / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"]["labels"]
    assert "gpu" in labels


def test_actionlint_fails_on_an_undeclared_runner_label(repo, tmp_path):
    """The lint is not vacuous: an unknown label is an error."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    text = (repo / ".github" / "workflows" / "gpu-validation.yml").read_text()
    (tmp_path / ".github" / "workflows" / "gpu.yml").write_text(text.replace("linux, gpu]", "linux, gpu, tpu]"))
    done = subprocess.run([_tool("actionlint"), "-config-file", str(repo / ".github" / "actionlint.yaml"),
                           str(tmp_path / ".github" / "workflows" / "gpu.yml")], capture_output=True, text=True)
    assert done.returncode != 0 and "tpu" in done.stdout


def test_zizmor_finds_nothing_unjustified(repo):
    """Every audit of the auditor persona, offline; a deliberate exception carries an inline justification."""
    done = subprocess.run([_tool("zizmor"), "--offline", "--persona", "auditor", "--no-progress",
                           ".github/workflows"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (repo / ".github" / "workflows" / "gpu-validation.yml").read_text().splitlines():
        if "zizmor: ignore" in line:
            assert "self-hosted-runner" in line  # the only accepted finding: the GPU runner is the point


# A small evaluator for the GitHub expressions the workflows use in `if:` (==, !=, &&, ||, !, parentheses,
# strings, context paths with `.*.` projections, contains()), so the test decides what each event can reach.
_TOKEN = re.compile(r"'[^']*'|[A-Za-z_][\w.*-]*|==|!=|&&|\|\||!|\(|\)|,|\s+")


def _lookup(context: dict, path: str):
    value = context
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part == "*":
            return [_lookup(item, ".".join(parts[i + 1:])) for item in (value or [])]
        value = value.get(part) if isinstance(value, dict) else None
    return value


def evaluate(expression: str, context: dict) -> bool:
    expression = expression.strip()
    if expression.startswith("${{"):
        expression = expression.removeprefix("${{").removesuffix("}}")
    python = []
    for token in _TOKEN.findall(expression):
        if token.isspace() or token in ("(", ")", ",", "==", "!="):
            python.append(token)
        elif token.startswith("'"):
            python.append(repr(token[1:-1].lower()))
        elif token in ("&&", "||", "!"):
            python.append({"&&": " and ", "||": " or ", "!": " not "}[token])
        elif token in ("contains", "true", "false"):
            python.append({"contains": "_contains", "true": "True", "false": "False"}[token])
        else:
            python.append(f"_get({token!r})")
    assert "".join(_TOKEN.findall(expression)) == expression, f"unsupported syntax in {expression!r}"

    def get(path):
        value = _lookup({"github": context}, path)
        return value.lower() if isinstance(value, str) else value  # GitHub compares strings case-insensitively

    def contains(haystack, needle):
        return needle in (haystack or [])

    return bool(eval("".join(python), {"_get": get, "_contains": contains}))  # noqa: S307 - test-made source


def _event(name: str, *, ref: str, head_repo: str | None = None, labels: tuple[str, ...] = ()) -> dict:
    context = {"event_name": name, "ref": ref, "repository": OWNER_REPO, "event": {}}
    if name == "pull_request":
        context["event"]["pull_request"] = {"head": {"repo": {"full_name": head_repo}},
                                            "labels": [{"name": label} for label in labels]}
    return context


EVENTS = {
    "fork pull request, labelled": _event("pull_request", ref="refs/pull/7/merge", head_repo="mallory/surgvqa",
                                          labels=("gpu-validation",)),
    "fork pull request": _event("pull_request", ref="refs/pull/7/merge", head_repo="mallory/surgvqa"),
    "fork pull request, label case changed": _event("pull_request", ref="refs/pull/7/merge",
                                                    head_repo="Mallory/SURGVQA", labels=("GPU-Validation",)),
    "branch pull request": _event("pull_request", ref="refs/pull/8/merge", head_repo=OWNER_REPO),
    "branch pull request, labelled": _event("pull_request", ref="refs/pull/8/merge", head_repo=OWNER_REPO,
                                            labels=("gpu-validation",)),
    "push to main": _event("push", ref="refs/heads/main"),
    "dispatch on a branch": _event("workflow_dispatch", ref="refs/heads/try-bf16"),
}


def test_the_expression_evaluator_is_not_vacuous():
    ctx = EVENTS["branch pull request, labelled"]
    assert evaluate("github.event_name == 'pull_request' && !(github.ref == 'refs/heads/main')", ctx)
    assert not evaluate("contains(github.event.pull_request.labels.*.name, 'other')", ctx)
    with pytest.raises(AssertionError, match="unsupported"):
        evaluate("github.ref == 'x' ? 1 : 2", ctx)


def test_no_fork_pull_request_reaches_the_self_hosted_runner(repo):
    gpu = _load(repo, "gpu-validation.yml")
    reaches = {}
    for job_name, job in gpu["jobs"].items():
        runs_on = job["runs-on"]
        assert "self-hosted" in runs_on and "gpu" in runs_on, f"{job_name}: not on the GPU runner"
        assert "if" in job, f"{job_name}: a self-hosted job needs a job-level condition"
        reaches = {event: evaluate(job["if"], ctx) for event, ctx in EVENTS.items()}
        assert reaches == {
            "fork pull request, labelled": False, "fork pull request": False,
            "fork pull request, label case changed": False, "branch pull request": False,
            "branch pull request, labelled": True, "push to main": True, "dispatch on a branch": True}, reaches
    assert set(gpu["on"]) == {"push", "workflow_dispatch", "pull_request"}
    assert gpu["on"]["push"]["branches"] == ["main"]


def test_only_the_gpu_workflow_asks_for_the_self_hosted_runner(repo):
    assert set(WORKFLOWS) == {"ci.yml", "gpu-validation.yml"}  # a new workflow gets this file's checks
    for name in WORKFLOWS:
        for job_name, job in _load(repo, name)["jobs"].items():
            if "self-hosted" in str(job["runs-on"]):
                assert (name, job_name) == ("gpu-validation.yml", "gpu")


def test_only_main_gets_the_release_credentials(repo):
    """Write access to the registry and the remote lives in the `gpu-release` environment, used from main only."""
    job = _load(repo, "gpu-validation.yml")["jobs"]["gpu"]
    environment = job["environment"].removeprefix("${{").removesuffix("}}").strip()
    # `a && 'x' || 'y'` is GitHub's conditional: evaluate the condition, then pick.
    condition, chosen, fallback = re.fullmatch(r"(.+) && '([\w-]+)' \|\| '([\w-]+)'", environment).groups()
    assert (chosen, fallback) == ("gpu-release", "gpu-validation")
    assert {e: evaluate(condition, ctx) for e, ctx in EVENTS.items()} == {e: e == "push to main" for e in EVENTS}


def test_only_main_promotes(repo):
    gpu = _load(repo, "gpu-validation.yml")
    steps = [s for job in gpu["jobs"].values() for s in job["steps"] if "run" in s]
    promoting = [s for s in steps if "--promote" in s["run"]]
    assert len(promoting) == 1 and "scripts/validate.sh gpu --promote" in promoting[0]["run"]
    assert {e: evaluate(promoting[0]["if"], ctx) for e, ctx in EVENTS.items()} == {
        e: e == "push to main" for e in EVENTS}
    ci = _load(repo, "ci.yml")
    assert not any("promote" in s.get("run", "") for job in ci["jobs"].values() for s in job["steps"])


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_hardening(repo, name):
    text = (repo / ".github" / "workflows" / name).read_text()  # comments included: scanners read them too
    workflow = _load(repo, name)
    assert "pull_request_target" not in text and "workflow_run" not in text
    assert workflow["permissions"] == {"contents": "read"}, "permissions widened at the workflow level"
    assert "group" in workflow["concurrency"]
    for job_name, job in workflow["jobs"].items():
        assert set(job.get("permissions", {}).values()) <= {"read", "none"}, f"{job_name}: permissions widened"
        assert isinstance(job.get("timeout-minutes"), int), f"{job_name}: no timeout-minutes"
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{job_name}: checkout keeps the token"
            if "uses" in step:
                pinned = re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"])
                assert pinned, f"{step['uses']}: not pinned to a commit"
            if "run" in step:
                # Expressions are expanded into the script text before the shell sees it: event text there is
                # script injection. Values travel through `env:` instead.
                assert "${{" not in step["run"], f"{job_name}: an expression inside run: {step['run']!r}"
                # Thin workflows: one command per step; anything longer is a script in the repository.
                assert "\n" not in step["run"].strip() and not re.search(r"[;&|]", step["run"]), step["run"]


def test_ci_runs_the_gpu_runners_script(repo):
    ci, gpu = _load(repo, "ci.yml"), _load(repo, "gpu-validation.yml")
    ci_runs = [s["run"] for job in ci["jobs"].values() for s in job["steps"] if "run" in s]
    gpu_runs = [s["run"] for job in gpu["jobs"].values() for s in job["steps"] if "run" in s]
    assert ci_runs == ["bash scripts/lint.sh", "bash .ci/run", "bash scripts/validate.sh embedded"]
    assert set(gpu_runs) == {"bash scripts/validate.sh gpu", "bash scripts/validate.sh gpu --promote"}
    assert all("self-hosted" not in str(job["runs-on"]) for job in ci["jobs"].values())
    assert "bash scripts/test.sh" in (repo / ".ci" / "run").read_text()
