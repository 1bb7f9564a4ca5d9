"""The `surgvqa` command, and the data half of the embedded profile end to end in a scratch copy (the whole
pipeline runs in tests/test_validate_script.py)."""

import json
import shutil
import sys

import pytest

from surgvqa.cli import _pull_from_remote, main
from tests.conftest import jpeg_bytes, write_raw
from tests.scratch import run, scratch_project, sh


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
    assert "complete and valid (18 sections)" in capsys.readouterr().out
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
    args = ["data", "import", "--from", str(src / "metadata.csv"), "--to", str(tmp_path / "out" / "raw")]
    # Half the rows have no image: above the project's ingest.max_bad_fraction, so the import fails as ingest would.
    assert main(["--params", str(repo / "params.yaml"), *args]) == 1
    assert "1 of 2 source rows would not reach training" in capsys.readouterr().err
    assert not (tmp_path / "out" / "raw").exists()
    lenient = tmp_path / "params.yaml"
    lenient.write_text((repo / "params.yaml").read_text().replace("max_bad_fraction: 0.05", "max_bad_fraction: 0.5"))
    assert main(["--params", str(lenient), *args]) == 0
    assert "1 of 2 rows" in capsys.readouterr().out
    assert (tmp_path / "out" / "raw" / "images" / "a1.jpg").read_bytes() == jpeg_bytes(5)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["skipped_by_reason"]["missing_image"] == 1


DATA_STAGES = ("ingest", "categorize", "convert", "split", "validate")


@pytest.mark.slow
def test_the_data_half_of_the_embedded_profile_is_reproducible(tmp_path, repo):
    """The embedded sample regenerates to the bytes data.dvc records, and the data stages to the committed lock."""
    import yaml

    scratch_project(tmp_path, repo)
    assert "generating the embedded sample" in sh(["surgvqa", "data", "ensure"], tmp_path)
    out = sh([sys.executable, "-m", "dvc", "repro", "validate"], tmp_path)
    assert "data validation: PASSED" in out
    # DVC re-hashes the regenerated raw data here and would rewrite data.dvc if a single byte differed.
    assert (tmp_path / "data.dvc").read_text() == (repo / "data.dvc").read_text()
    report = json.loads((tmp_path / "reports" / "data_validation.json").read_text())
    assert report["success"] and report["leaked_images"] == []
    assert sum(report["rows_per_split"].values()) == json.loads(
        (tmp_path / "reports" / "ingest.json").read_text())["rows_ok"]
    lock, committed = (yaml.safe_load((d / "dvc.lock").read_text())["stages"] for d in (tmp_path, repo))
    assert {s: lock[s] for s in DATA_STAGES} == {s: committed[s] for s in DATA_STAGES}
    # A data/raw that is not what data.dvc records (another profile's) is refused before any stage runs.
    sh(["surgvqa", "profile", "use", "test"], tmp_path)
    refused = run(["surgvqa", "data", "ensure"], tmp_path)
    assert refused.returncode == 1 and "is not the data data.dvc records" in refused.stderr
    sh(["surgvqa", "profile", "use", "embedded"], tmp_path)

    # With a remote configured, `data ensure` pulls instead of generating.
    dvc = [sys.executable, "-m", "dvc"]
    sh([*dvc, "remote", "add", "-d", "store", str(tmp_path / "remote")], tmp_path)
    sh([*dvc, "commit", "-q", "data.dvc"], tmp_path)  # the generated sample into the cache, to push it
    sh([*dvc, "push", "-q", "data.dvc"], tmp_path)
    shutil.rmtree(tmp_path / "data" / "raw")
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    assert "pulling it from DVC remote store" in sh(["surgvqa", "data", "ensure"], tmp_path)
    assert "is present and is the data data.dvc records" in sh(["surgvqa", "data", "ensure"], tmp_path)

    # Without one, data that the generator does not make (imported, as the gpu profile's) is never stood in for.
    sh([*dvc, "remote", "remove", "store"], tmp_path)
    shutil.rmtree(tmp_path / "data" / "raw")
    (tmp_path / "data.dvc").write_text((tmp_path / "data.dvc").read_text().replace("52603f1479d994beb042f4ed08f85a71",
                                                                                   "0" * 32))
    refused = run(["surgvqa", "data", "ensure"], tmp_path)
    assert refused.returncode == 1 and "does not make" in refused.stderr and "DVC_REMOTE_URL" in refused.stderr
    assert not (tmp_path / "data" / "raw").exists()  # the sample it made to compare is gone again


def test_repro_pulls_from_a_configured_remote_once_and_never_without_one(capsys):
    """`surgvqa repro` hands `dvc repro` --pull (once, whoever asked for it) exactly when a remote is configured."""
    assert _pull_from_remote(["--force"], None) == ["--force"] and capsys.readouterr().out == ""
    assert _pull_from_remote(["train_baseline"], "ci") == ["--pull", "train_baseline"]
    assert _pull_from_remote(["--pull", "--force"], "ci") == ["--pull", "--force"]
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 2 and all(line.startswith("repro: DVC remote ci is configured") for line in said)


def test_remotes_without_a_default_are_an_error_that_names_the_fix(tmp_path):
    """`dvc pull` and `dvc repro --pull` need a default remote: with remotes but none the default, `data ensure`
    (and so `surgvqa repro`) refuses before pulling or generating anything, naming the command that picks one."""
    sh([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], tmp_path)
    sh([sys.executable, "-m", "dvc", "remote", "add", "store", str(tmp_path / "remote")], tmp_path)
    refused = run(["surgvqa", "data", "ensure"], tmp_path)
    assert refused.returncode == 1 and "none is the default: `dvc remote default NAME`" in refused.stderr
    assert not (tmp_path / "data").exists()


def test_summary_refuses_a_gate_report_that_is_not_of_this_runs_candidate(tmp_path, repo, capsys):
    """reports/ is committed: after a run that stopped before the gate, gate.json is another run's, and the job
    summary must not show its verdict as this run's (the whole summary is checked in test_validate_script.py)."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "compare.md").write_text("| approach | overall |\n|---|---|\n| sequential | 0.5 |\n")
    check = {"name": "strict accuracy", "passed": True, "value": 0.6, "threshold": 0.5, "detail": "0.6 >= 0.5"}
    (reports / "gate.json").write_text(json.dumps({"passed": True, "checks": [check],
                                                   "candidate": {"approach": "sequential", "merged_sha256": "f" * 64}}))
    code = main(["--params", str(repo / "params.yaml"), "summary", "--reports", str(reports),
                 "--merged", str(tmp_path / "no-merged-model"), "--test", str(tmp_path / "test.jsonl")])
    captured = capsys.readouterr()
    assert code == 1 and "no gate report of this run" in captured.err
    assert captured.out.startswith("## surgvqa validation: profile embedded")
    assert "### Release gate: no report of this run's candidate" in captured.out and "PASSED" not in captured.out
