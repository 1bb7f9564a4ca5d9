"""The `surgvqa` command and the DVC pipeline end to end, in a scratch copy of the project."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from surgvqa.cli import main
from tests.conftest import jpeg_bytes, write_raw

BIN = str(Path(sys.executable).parent)  # where `surgvqa` and `dvc` are installed


def _run(args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def _sh(args, cwd):
    done = _run(args, cwd)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_errors_are_one_clear_line_not_a_traceback(tmp_path, capsys, repo):
    code = main(["--params", str(repo / "params.yaml"), "ingest", "--raw", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o"), "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "surgvqa data sample" in err and "Traceback" not in err


def test_wrong_params_key_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("sample:\n  images: 3\n  sead: 1\n")
    assert main(["--params", str(tmp_path / "params.yaml"), "data", "sample", "--out", str(tmp_path / "raw")]) == 1
    assert "sample.sead: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()


def test_params_check_loads_every_section(tmp_path, repo, capsys):
    assert main(["--params", str(repo / "params.yaml"), "params", "check"]) == 0
    assert "complete and valid (17 sections)" in capsys.readouterr().out
    (tmp_path / "params.yaml").write_text("sample:\n  images: 3\n  seed: 1\n")
    assert main(["--params", str(tmp_path / "params.yaml"), "params", "check"]) == 1
    assert "ingest: missing" in capsys.readouterr().err


def test_an_argument_value_that_names_a_stage_is_still_an_argument(tmp_path, repo, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `--out train`: the value is a folder, not the `train` command
    assert main(["--params", str(repo / "params.yaml"), "data", "sample", "--out", "train", "--images", "2",
                 "--seed", "3"]) == 0
    assert "sample: 2 images" in capsys.readouterr().out and (tmp_path / "train" / "metadata.csv").is_file()


def test_a_stage_command_passes_its_arguments_to_the_module_dvc_runs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["ingest", "--help"])
    assert e.value.code == 0 and "--report" in capsys.readouterr().out


def test_data_import_from_csv(tmp_path, repo, capsys):
    src = write_raw(tmp_path / "export", [("Normal", "Is there text?", "no", "a1"), ("Normal", "Is there text?", "no",
                                                                                      "gone")], {"a1": jpeg_bytes(5)})
    code = main(["--params", str(repo / "params.yaml"), "data", "import", "--from", str(src / "metadata.csv"),
                 "--to", str(tmp_path / "out" / "raw")])
    assert code == 0
    assert "1 of 2 rows" in capsys.readouterr().out
    assert (tmp_path / "out" / "raw" / "images" / "a1.jpg").read_bytes() == jpeg_bytes(5)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["skipped_by_reason"]["missing_image"] == 1


DATA_STAGES = ("ingest", "categorize", "convert", "split", "validate")
# The whole pipeline, scaled down so it runs in about two minutes: a smaller tiny model, a few steps a stage.
SMALL = {"model": {"image_pixels": 3136, "tiny": {"pretrain_epochs": 1.0}},
         "train": {"max_steps": 2, "batch_size": 4, "logging_steps": 1}}


APPROACHES = ("sequential", "curriculum", "baseline")


@contextlib.contextmanager
def _edited(path: Path, old: str, new: str):
    """Replace `old` (which must occur) by `new` in a file for the duration of the block."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
    try:
        yield
    finally:
        path.write_text(text)


def _changed_stages(cwd: Path) -> dict:
    """Stages whose recorded deps or params changed, as `dvc status` reports them."""
    out = _sh([sys.executable, "-m", "dvc", "status", "--json"], cwd)
    status = json.loads(out[out.index("{"):])
    return {name: changes for name, changes in status.items() if any("changed deps" in c for c in changes
                                                                         if isinstance(c, dict))}


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        base[k] = _merge(base.get(k) or {}, v) if isinstance(v, dict) else v
    return base


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_pipeline_and_the_data_half_is_reproducible(tmp_path, repo):
    import yaml
    from mlflow.tracking import MlflowClient

    for name in ("dvc.yaml", "data.dvc", ".dvcignore"):
        shutil.copy(repo / name, tmp_path / name)
    params = _merge(yaml.safe_load((repo / "params.yaml").read_text()), SMALL)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(repo / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _sh([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], tmp_path)
    _sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], tmp_path)

    assert "generating the embedded sample" in _sh(["surgvqa", "data", "ensure"], tmp_path)
    out = _sh([sys.executable, "-m", "dvc", "repro"], tmp_path)
    assert "data validation: PASSED" in out
    # DVC re-hashes the regenerated raw data here and would rewrite data.dvc if a single byte differed.
    assert (tmp_path / "data.dvc").read_text() == (repo / "data.dvc").read_text()
    report = json.loads((tmp_path / "reports" / "data_validation.json").read_text())
    assert report["success"] and report["leaked_images"] == []
    assert sum(report["rows_per_split"].values()) == json.loads(
        (tmp_path / "reports" / "ingest.json").read_text())["rows_ok"]
    # The data stages record the same hashes as the committed lock file: they are deterministic.
    lock, committed = (yaml.safe_load((d / "dvc.lock").read_text())["stages"] for d in (tmp_path, repo))
    assert {s: lock[s] for s in DATA_STAGES} == {s: committed[s] for s in DATA_STAGES}

    # Seven adapters, all verified, with the curriculum's parent chain in the MLflow store.
    verified = json.loads((tmp_path / "reports" / "verify_adapters.json").read_text())
    assert verified["adapters"] == verified["adapters_passed"] == 7
    # Every approach evaluated, and compared side by side.
    for approach in ("sequential", "curriculum", "baseline"):
        metrics = json.loads((tmp_path / "reports" / "eval" / approach / "metrics.json").read_text())
        assert metrics["approach"] == approach
        assert 0 <= metrics["context_strict_overall"] <= metrics["context_lenient_overall"]
    assert "| sequential vs baseline |" in (tmp_path / "reports" / "compare.md").read_text()
    assert (tmp_path / "reports" / "charts" / "forgetting.png").is_file()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    runs = client.search_runs(client.get_experiment_by_name("surgvqa").experiment_id)
    by_name = {r.data.tags["mlflow.runName"]: r for r in runs if "kind" not in r.data.tags}
    assert len(runs) == 7 + 3 + 1 and set(by_name) == {*(f"{a}-stage_{s}" for a in ("sequential", "curriculum")
                                                         for s in (1, 2, 3)), "baseline"}
    assert {r.data.tags["mlflow.runName"] for r in runs if "kind" in r.data.tags} == {
        "evaluate-sequential", "evaluate-curriculum", "evaluate-baseline", "compare"}
    parent = {n: r.data.tags["parent_run_id"] for n, r in by_name.items()}
    ids = {n: r.info.run_id for n, r in by_name.items()}
    assert parent["curriculum-stage_3"] == ids["curriculum-stage_2"]
    assert parent["curriculum-stage_2"] == ids["curriculum-stage_1"] and parent["curriculum-stage_1"] == "none"
    assert all(parent[f"sequential-stage_{s}"] == "none" for s in (1, 2, 3)) and parent["baseline"] == "none"

    # The release: the merged candidate answers as its adapters did, and the gate's verdict is what `check-gate`
    # and `promote` act on (two training steps may or may not clear the floors; either way nothing lies).
    evaluation = json.loads((tmp_path / "reports" / "release" / "evaluation.json").read_text())
    assert evaluation["fidelity"]["ties"] == 1.0 and evaluation["candidate"]["approach"] == "sequential"
    gate = json.loads((tmp_path / "reports" / "gate.json").read_text())
    assert gate["passed"] == all(c["passed"] for c in gate["checks"]) and len(gate["checks"]) >= 14
    check = _run(["surgvqa", "check-gate"], tmp_path)
    assert (check.returncode == 0) == gate["passed"], check.stdout + check.stderr
    promoted = _run(["surgvqa", "promote"], tmp_path)
    assert (promoted.returncode == 0) == gate["passed"], promoted.stdout + promoted.stderr
    aliases = client.get_registered_model("surgvqa-kvasir-vqa").aliases
    assert aliases.get("challenger") is not None and (aliases.get("champion") is not None) == gate["passed"]

    # DVC reruns exactly what changed: a params key, a code file, a section's schema; each probe is undone after.
    assert _changed_stages(tmp_path) == {}
    train_stages = {f"train_{a}@{s}" for a in ("sequential", "curriculum") for s in (1, 2, 3)} | {"train_baseline"}
    with _edited(tmp_path / "params.yaml", "dropout: 0.05", "dropout: 0.1"):
        assert set(_changed_stages(tmp_path)) == train_stages
    with _edited(tmp_path / "src/surgvqa/model/prompts.py", '"count": "count"', '"count": "number"'):
        assert set(_changed_stages(tmp_path)) == {"base", *train_stages, *(f"evaluate@{a}" for a in APPROACHES),
                                                  "merge", "evaluate_merged"}
    with _edited(tmp_path / "src/surgvqa/params/evaluate.py", "bootstrap_samples < 100", "bootstrap_samples < 99"):
        assert set(_changed_stages(tmp_path)) == {*(f"evaluate@{a}" for a in APPROACHES), "compare", "merge",
                                                  "evaluate_merged"}
    with _edited(tmp_path / "params.yaml", "min_items: 200", "min_items: 100"):
        assert set(_changed_stages(tmp_path)) == {"gate"}
    assert _changed_stages(tmp_path) == {}

    # Same inputs, same bytes: forced reruns of the base, a continued adapter and an evaluation change nothing.
    lock = (tmp_path / "dvc.lock").read_text()
    for stage in ("base", "train_curriculum@2", "evaluate@baseline", "merge"):
        _sh([sys.executable, "-m", "dvc", "repro", "-q", "-f", "-s", stage], tmp_path)
    assert (tmp_path / "dvc.lock").read_text() == lock and _changed_stages(tmp_path) == {}

    # Regenerating the sample changes nothing DVC can see; a second repro is a no-op.
    shutil.rmtree(tmp_path / "data" / "raw")
    _sh(["surgvqa", "data", "ensure"], tmp_path)
    assert "up to date" in _sh([sys.executable, "-m", "dvc", "status", "data.dvc"], tmp_path)
    assert "Data and pipelines are up to date" in _sh([sys.executable, "-m", "dvc", "repro"], tmp_path)

    # With a remote configured, `data ensure` pulls instead of generating.
    _sh([sys.executable, "-m", "dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], tmp_path)
    _sh([sys.executable, "-m", "dvc", "push", "-q", "data.dvc"], tmp_path)
    shutil.rmtree(tmp_path / "data" / "raw")
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    assert "pulling it from DVC remote store" in _sh(["surgvqa", "data", "ensure"], tmp_path)
    assert (tmp_path / "data" / "raw" / "metadata.csv").is_file()
    assert "up to date" in _sh([sys.executable, "-m", "dvc", "status", "data.dvc"], tmp_path)
