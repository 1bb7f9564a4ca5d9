"""scripts/validate.sh end to end on the test profile, as the workflows run it: against a local DVC remote and a
real `mlflow server` on 127.0.0.1 backed by a real PostgreSQL (scripts/tracking_server.sh, the team's server),
through `dvc pull`, `dvc repro`, the release gate, the job summary and `promote`, with the runs, lineage tags and
aliases read back from PostgreSQL's tables; then what DVC must guarantee of the result (reruns exactly what
changed, same inputs same bytes), and what a fresh `git clone` with the remote gets: scripts/repro.sh and `dvc
pull` fetch every output and run nothing, and the remote's run cache restores the trained stages for a commit
whose dvc.lock does not record them."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.postgres import postgres_rows
from tests.scratch import (
    changed_stages,
    edited,
    file_hashes,
    git_commit,
    run,
    scratch_git_project,
    sh,
    share_environment,
)

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


def _lineage_in_postgresql(pg_uri: str, project: Path) -> None:
    """What the run left, read from the server's PostgreSQL tables rather than through MLflow: every training run
    FINISHED with its lineage tags (parent run, base model hash, quantization flag, the adapter's sha256 as its
    lineage.json records it) and the registry's aliases."""
    tags: dict[str, dict[str, str]] = {}
    for row in postgres_rows(pg_uri, "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r USING (run_uuid) "
                                     "WHERE r.status = 'FINISHED' AND r.lifecycle_stage = 'active'"):
        tags.setdefault(row["run_uuid"], {})[row["key"]] = row["value"]
    training = {t["name"]: t | {"run_id": run_id} for run_id, t in tags.items() if t.get("kind") == "training"}
    assert len(training) == 7
    base_hash = json.loads((project / "models" / "base" / "base.json").read_text())["content_hash"]
    for name, run_tags in training.items():
        folder = project / "models" / name.replace("-", "/")
        lineage = json.loads((folder / "lineage.json").read_text())
        assert run_tags["base_model_hash"] == base_hash and run_tags["quantized"] == "false", name
        assert run_tags["adapter_sha256"] == lineage["adapter_sha256"], name
    assert training["curriculum-stage_2"]["parent_run_id"] == training["curriculum-stage_1"]["run_id"]
    assert training["curriculum-stage_3"]["parent_run_id"] == training["curriculum-stage_2"]["run_id"]
    assert training["baseline"]["parent_run_id"] == "none"
    assert postgres_rows(pg_uri, "SELECT alias, version FROM registered_model_aliases WHERE name = %s ORDER BY alias",
                         ("surgvqa-kvasir-vqa",)) == [{"alias": "challenger", "version": 1},
                                                      {"alias": "champion", "version": 1}]


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
def test_validate_script_pulls_runs_gates_summarises_and_promotes(tmp_path, repo, postgres_mlflow_server):
    from mlflow.tracking import MlflowClient

    mlflow_server, pg_uri = postgres_mlflow_server

    project = scratch_git_project(tmp_path / "project", repo)
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
    assert "pulling profile test's data from DVC remote ci" in log
    assert log.count("`dvc repro --pull` fetches") == 1  # surgvqa repro adds --pull; validate.sh passes none
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
    _lineage_in_postgresql(pg_uri, project)
    assert (remote / "files" / "md5").is_dir() and any((remote / "runs").rglob("*"))  # outputs and run cache
    # What the maintainer commits after the run: dvc.lock, params.yaml, data.dvc and the reports DVC keeps in git.
    git_commit(project, "validated profile test")

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
    # (One `dvc repro` for the three: DVC starts and reads the pipeline once. The merge's rerun to the same bytes
    # is tests/faults/test_kill_resume.py's.)
    lock = (project / "dvc.lock").read_text()
    sh([*DVC, "repro", "-q", "-f", "-s", "base", "train_curriculum@2", "evaluate@baseline"], project, env)
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

    # A fresh clone with the remote, as a user has the project (git's files: dvc.lock and the `cache: false`
    # reports, no data, no models, no DVC cache): scripts/repro.sh pulls the data and every output, runs nothing,
    # and the gate passes for the candidate it pulled, byte for byte the one that was built.
    clone = _clone_with_remote(project, tmp_path / "clone", remote)
    share_environment(clone)
    pulled = run(["bash", "scripts/repro.sh"], clone)
    log = pulled.stdout + pulled.stderr
    assert pulled.returncode == 0, log[-6000:]
    assert "pulling it from DVC remote ci" in log and "generating the embedded sample" not in log
    assert log.count("`dvc repro --pull` fetches") == 1 and "Running stage" not in log, log[-6000:]
    assert "gate PASSED" in log and "Data and pipelines are up to date." in sh([*DVC, "status"], clone)
    assert (clone / "dvc.lock").read_text() == lock
    for outputs in ("data", "models"):
        assert file_hashes(clone / outputs) == file_hashes(project / outputs)

    # The same by hand: `dvc pull`, then `dvc repro` finds nothing to do.
    second = _clone_with_remote(project, tmp_path / "second", remote)
    sh([*DVC, "pull", "-q"], second)
    again = sh([*DVC, "repro"], second)
    assert "Data and pipelines are up to date." in again and "Running stage" not in again, again

    # A commit whose dvc.lock does not record the stages (another branch's, say) with the same deps and params:
    # `dvc repro --pull` restores the base and the adapters from the remote's run cache instead of training.
    branch = _clone_with_remote(project, tmp_path / "branch", remote)
    (branch / "dvc.lock").unlink()
    restored = sh([*DVC, "repro", "--pull", "train_curriculum@3"], branch)
    assert "Running stage 'base'" not in restored and "Running stage 'train_" not in restored, restored
    assert {"base", "train_curriculum@1", "train_curriculum@2", "train_curriculum@3"} <= {
        line.split("'")[1] for line in restored.splitlines() if "is cached - skipping run" in line}, restored
    assert file_hashes(branch / "models" / "curriculum") == file_hashes(project / "models" / "curriculum")


def _clone_with_remote(project: Path, where: Path, remote: Path) -> Path:
    """`git clone` of the scratch project, with the DVC remote configured as a user does (out of git)."""
    sh(["git", "clone", "-q", str(project), str(where)], project.parent)
    sh([*DVC, "remote", "add", "--local", "-d", "ci", str(remote)], where)
    return where
