"""MLproject: an entry point for the main job and for every DVC stage, typed parameters, an environment file,
and `mlflow run . -e <entry> --env-manager local` working for real."""

import json
import sys

import pytest
import yaml

from tests.scratch import run, scratch_project

APPROACH_STAGES = {"train_sequential", "train_curriculum", "train_baseline"}  # one `train` entry, by approach


def _project(repo) -> dict:
    return yaml.safe_load((repo / "MLproject").read_text())


def test_every_stage_has_an_entry_point_with_typed_parameters(repo):
    project = _project(repo)
    entries = project["entry_points"]
    stages = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    assert stages - APPROACH_STAGES <= set(entries) and {"main", "train", "promote", "rollback"} <= set(entries)
    for name, entry in entries.items():
        for param, spec in entry.get("parameters", {}).items():
            assert spec["type"] in ("string", "float", "path", "uri"), f"{name}.{param}: untyped"
            assert "{" + param + "}" in entry["command"], f"{name}.{param}: declared but never used"
        if name not in ("promote", "rollback"):
            assert entry["command"].startswith("surgvqa repro --profile {profile}"), name
    assert entries["train"]["command"].endswith("train_{approach}")
    assert entries["evaluate"]["command"].endswith("evaluate@{approach}")
    env = yaml.safe_load((repo / project["python_env"]).read_text())
    assert "torch==2.13.0" in env["dependencies"] and "-e ." in env["dependencies"]


@pytest.mark.slow
def test_mlflow_run_an_entry_point_with_the_local_environment(tmp_path, repo):
    from mlflow.tracking import MlflowClient

    project = scratch_project(tmp_path / "project", repo)
    store = f"sqlite:///{project / 'mlflow.db'}"
    done = run([sys.executable, "-m", "mlflow", "run", str(project), "-e", "validate", "--env-manager", "local",
                "-P", "profile=test", "--experiment-name", "surgvqa-project"], project,
               {"MLFLOW_TRACKING_URI": store})
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert (project / "params.yaml").read_text().startswith("# profile: test,")  # the parameter reached the entry
    report = json.loads((project / "reports" / "data_validation.json").read_text())
    assert report["success"]
    assert not (project / "models").exists()  # `validate` and what it depends on, nothing downstream
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs(client.get_experiment_by_name("surgvqa-project").experiment_id)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params == {"profile": "test"}
    assert runs[0].data.tags["mlflow.project.entryPoint"] == "validate"
