"""The `surgvqa` command, and the data half of the embedded profile end to end in a scratch copy (the whole
pipeline runs in tests/test_validate_script.py)."""

import json
import sys

import pytest

from surgvqa.cli import main
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


def test_summary_shows_the_gate_and_the_comparison_and_fails_when_one_is_missing(tmp_path, repo, capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "compare.md").write_text("| approach | overall |\n|---|---|\n| sequential | 0.5 |\n")
    check = {"name": "strict accuracy", "passed": False, "value": 0.1, "threshold": 0.5, "detail": "0.1 < 0.5"}
    (reports / "gate.json").write_text(json.dumps({"passed": False, "checks": [check],
                                                   "candidate": {"approach": "sequential", "merged_sha256": "f" * 64}}))
    assert main(["--params", str(repo / "params.yaml"), "summary", "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## surgvqa validation: profile embedded")
    assert "### Release gate: FAILED for merged sequential ffffffffffff" in out and "FAILED  strict accuracy" in out
    assert "| sequential | 0.5 |" in out
    (reports / "compare.md").unlink()
    assert main(["--params", str(repo / "params.yaml"), "summary", "--reports", str(reports)]) == 1
    assert "summary is incomplete" in capsys.readouterr().err
