"""scripts/validate.sh end to end on the test profile, as the workflows run it: against a local DVC remote and a
real `mlflow server` on 127.0.0.1, through `dvc pull`, `dvc repro`, the release gate, the job summary and
`promote`; then what DVC must guarantee of the result (reruns exactly what changed, same inputs same bytes,
the run cache restores a fresh copy)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.scratch import changed_stages, edited, run, scratch_project, sh, share_environment

APPROACHES = ("sequential", "curriculum", "baseline")
TRAIN_STAGES = {f"train_{a}@{s}" for a in ("sequential", "curriculum") for s in (1, 2, 3)} | {"train_baseline"}
DVC = [sys.executable, "-m", "dvc"]


def _pipeline_outputs(project: Path, server: str) -> None:
    """Everything a whole run leaves: verified adapters, evaluations, comparison, release, MLflow lineage."""
    from mlflow.tracking import MlflowClient

    verified = json.loads((project / "reports" / "verify_adapters.json").read_text())
    assert verified["adapters"] == verified["adapters_passed"] == 7
    for approach in APPROACHES:
        metrics = json.loads((project / "reports" / "eval" / approach / "metrics.json").read_text())
        assert metrics["approach"] == approach
        assert 0 <= metrics["context_strict_overall"] <= metrics["context_lenient_overall"]
    assert "| sequential vs baseline |" in (project / "reports" / "compare.md").read_text()
    assert (project / "reports" / "charts" / "forgetting.png").is_file()
    assert not (project / "mlflow.db").exists()  # SURGVQA_TRACKING_URI sent every run to the server
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    runs = client.search_runs(client.get_experiment_by_name("surgvqa").experiment_id)
    by_name = {r.data.tags["name"]: r for r in runs if r.data.tags["kind"] == "training"}
    assert len(runs) == 7 + 3 + 1 + 1 and set(by_name) == {
        *(f"{a}-stage_{s}" for a in ("sequential", "curriculum") for s in (1, 2, 3)), "baseline"}
    assert {r.data.tags["name"] for r in runs if r.data.tags["kind"] != "training"} == {
        "evaluate-sequential", "evaluate-curriculum", "evaluate-baseline", "compare", "release-sequential"}
    parent = {n: r.data.tags["parent_run_id"] for n, r in by_name.items()}
    ids = {n: r.info.run_id for n, r in by_name.items()}
    assert parent["curriculum-stage_3"] == ids["curriculum-stage_2"]
    assert parent["curriculum-stage_2"] == ids["curriculum-stage_1"] and parent["curriculum-stage_1"] == "none"
    assert all(parent[f"sequential-stage_{s}"] == "none" for s in (1, 2, 3)) and parent["baseline"] == "none"
    evaluation = json.loads((project / "reports" / "release" / "evaluation.json").read_text())
    assert evaluation["fidelity"]["ties"] == 1.0 and evaluation["candidate"]["approach"] == "sequential"


def summary_file_has_failed(path: Path) -> bool:
    """The job summary's last section reports a failed gate with its table."""
    last = path.read_text().rsplit("## surgvqa validation:", 1)[-1]
    return "### Release gate: FAILED" in last and "FAILED  strict accuracy" in last


def test_promoting_needs_a_shared_tracking_server_and_arguments_are_checked(repo, tmp_path):
    """Without SURGVQA_TRACKING_URI (an unset secret arrives empty) `--promote` is refused before any work, and
    so is a wrong argument."""
    script = str(repo / "scripts" / "validate.sh")
    done = run(["bash", script, "test", "--promote"], tmp_path, {"SURGVQA_TRACKING_URI": ""})
    assert done.returncode == 2 and "--promote needs SURGVQA_TRACKING_URI" in done.stderr
    for args in (["test", "--promote", "extra"], ["test", "--promot"], []):
        done = run(["bash", script, *args], tmp_path, {"SURGVQA_TRACKING_URI": "http://127.0.0.1:1"})
        assert done.returncode != 0 and "usage: bash scripts/validate.sh PROFILE [--promote]" in done.stderr
        assert "setup:" not in done.stdout  # nothing was installed or run


@pytest.mark.slow
def test_validate_script_pulls_runs_gates_summarises_and_promotes(tmp_path, repo, mlflow_server):
    from mlflow.tracking import MlflowClient

    project = scratch_project(tmp_path / "project", repo)
    share_environment(project)
    remote = tmp_path / "remote"
    env = {"DVC_REMOTE_URL": str(remote), "SURGVQA_TRACKING_URI": mlflow_server,
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}

    # The test profile's data, pushed once to the remote (as a maintainer does for the GPU profile's), then
    # gone from the workspace and the cache: the script has to pull it.
    sh(["surgvqa", "profile", "use", "test"], project)
    assert "generating the embedded sample" in sh(["surgvqa", "data", "ensure"], project)
    sh([*DVC, "commit", "-f", "-q", "data.dvc"], project)  # would rewrite data.dvc if a single byte differed
    assert (project / "data.dvc").read_text() == (repo / "profiles" / "test" / "data.dvc").read_text()
    sh([*DVC, "remote", "add", "--local", "-d", "ci", str(remote)], project)
    sh([*DVC, "push", "-q", "data.dvc"], project)
    shutil.rmtree(project / "data" / "raw")
    shutil.rmtree(project / ".dvc" / "cache")
    sh([*DVC, "remote", "remove", "--local", "ci"], project)
    sh(["surgvqa", "profile", "use", "embedded"], project)  # the script switches back to test itself

    done = run(["bash", "scripts/validate.sh", "test", "--promote"], project, env)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "pulling profile test's data and the run cache from DVC remote ci" in log
    assert "is present and is the data data.dvc records" in log and "gate PASSED" in log
    assert "validate: profile test passed" in log
    assert (project / "params.yaml").read_text().startswith("# profile: test,")

    gate = json.loads((project / "reports" / "gate.json").read_text())
    assert gate["passed"] and all(c["passed"] for c in gate["checks"]) and len(gate["checks"]) >= 14
    majority = next(c for c in gate["checks"] if c["name"] == "beats the majority answer")
    assert "not required: gate.significance is null" in majority["detail"]
    summary = (tmp_path / "summary.md").read_text()
    assert "## surgvqa validation: profile test" in summary and "### Release gate: PASSED" in summary
    assert "| majority answer per question |" in summary and "merge fidelity: ties" in summary
    _pipeline_outputs(project, mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    aliases = client.get_registered_model("surgvqa-kvasir-vqa").aliases
    assert aliases == {"champion": "1", "challenger": "1"}
    assert (remote / "files" / "md5").is_dir() and any((remote / "runs").rglob("*"))  # outputs and run cache

    # DVC reruns exactly what changed: a params key, a code file, a section's schema; each probe is undone after.
    assert changed_stages(project) == {}
    with edited(project / "params.yaml", "dropout: 0.05", "dropout: 0.1"):
        assert set(changed_stages(project)) == TRAIN_STAGES
    with edited(project / "src/surgvqa/model/prompts.py", '"count": "count"', '"count": "number"'):
        assert set(changed_stages(project)) == {"base", *TRAIN_STAGES, *(f"evaluate@{a}" for a in APPROACHES),
                                                "merge", "evaluate_merged"}
    with edited(project / "src/surgvqa/params/evaluate.py", "bootstrap_samples < 100", "bootstrap_samples < 99"):
        assert set(changed_stages(project)) == {*(f"evaluate@{a}" for a in APPROACHES), "compare", "merge",
                                                "evaluate_merged"}
    with edited(project / "params.yaml", "min_items: 50", "min_items: 40"):
        assert set(changed_stages(project)) == {"gate"}
    assert changed_stages(project) == {}

    # Same inputs, same bytes: forced reruns of the base, a continued adapter and an evaluation change nothing.
    lock = (project / "dvc.lock").read_text()
    for stage in ("base", "train_curriculum@2", "evaluate@baseline", "merge"):
        sh([*DVC, "repro", "-q", "-f", "-s", stage], project, env)
    assert (project / "dvc.lock").read_text() == lock and changed_stages(project) == {}

    # A failing gate: the script writes the summary, exits non-zero, promotes nothing and pushes nothing.
    test_profile = project / "profiles" / "test" / "params.yaml"
    test_profile.write_text(test_profile.read_text().replace("min_strict_overall: 0.0", "min_strict_overall: 1.0"))
    pushed = sorted(p.relative_to(remote) for p in remote.rglob("*"))
    failed = run(["bash", "scripts/validate.sh", "test", "--promote"], project, env)
    log = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "nothing was promoted" in log and "Running stage 'train_" not in log
    assert "the gate FAILED" in log
    assert summary_file_has_failed(tmp_path / "summary.md")
    assert client.get_registered_model("surgvqa-kvasir-vqa").aliases == {"champion": "1", "challenger": "1"}
    assert len(client.search_model_versions("name='surgvqa-kvasir-vqa'")) == 1
    assert sorted(p.relative_to(remote) for p in remote.rglob("*")) == pushed
    test_profile.write_text((repo / "profiles" / "test" / "params.yaml").read_text())

    # A fresh copy restores the base, every adapter and the merge from the remote's run cache instead of
    # training again. (A stage whose report is kept in git, `cache: false`, reruns: DVC pushes no object for it.)
    fresh = scratch_project(tmp_path / "fresh", repo)
    share_environment(fresh)
    again = run(["bash", "scripts/validate.sh", "test"], fresh, {**env, "GITHUB_STEP_SUMMARY": ""})
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-6000:]
    restored = {line.split("'")[1] for line in log.splitlines() if "is cached - skipping run" in line}
    assert {"base", *TRAIN_STAGES, "merge"} <= restored and "Running stage 'train_" not in log, log[-6000:]
    assert (fresh / "dvc.lock").read_text() == lock
    assert "### Release gate: PASSED" in (fresh / "reports" / "summary.md").read_text()
