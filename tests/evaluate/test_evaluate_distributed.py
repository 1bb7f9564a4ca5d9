"""The evaluate stage as two CPU processes (torchrun, gloo) on the tiny model: the same reports as one process's,
one MLflow run, one printed summary, and each process answering its own share of the images."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.model_fixtures import write_params
from tests.scratch import run
from tests.servers import free_port

APPROACH = "sequential"


def stage_args(project: dict, models: Path, where: Path) -> list[str]:
    """`surgvqa.evaluate.evaluate`'s arguments for the tiny adapters, its reports going to where/out."""
    where.mkdir()
    return ["--params", str(write_params(project["params"], where / "params.yaml")), "--approach", APPROACH,
            "--models", str(models), "--splits", str(project["splits"]), "--raw", str(project["raw"]),
            "--stage-table", str(project["root"] / "categorized" / "question_stages.csv"), "--out", str(where / "out")]


def summary_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(f"{APPROACH} (")]


@pytest.mark.slow
def test_two_processes_write_one_process_reports_and_one_mlflow_run(tiny_project, tiny_adapters, tmp_path,
                                                                     monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from surgvqa.evaluate import evaluate
    from surgvqa.params.tracking import URI_VARIABLE

    modes = tiny_project["params"].evaluate.modes
    assert set(modes) == {"context", "independent"} and tiny_project["params"].evaluate.decoding == "constrained"
    one, two = tmp_path / "one", tmp_path / "two"
    monkeypatch.setenv(URI_VARIABLE, f"sqlite:///{one / 'mlflow.db'}")
    assert evaluate.main(stage_args(tiny_project, tiny_adapters, one)) == 0  # one process: this one
    one_stdout = capsys.readouterr().out
    done = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), "-m", "surgvqa.evaluate.evaluate",
                *stage_args(tiny_project, tiny_adapters, two)],
               tmp_path, {"OMP_NUM_THREADS": "1", URI_VARIABLE: f"sqlite:///{two / 'mlflow.db'}"})
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"

    for name in ("predictions.jsonl", "report.json", "metrics.json", "per_stage.csv"):
        assert (two / "out" / APPROACH / name).read_bytes() == (one / "out" / APPROACH / name).read_bytes(), name
    # Only the main process wrote: the report folder and nothing beside it (no second partial folder).
    assert [p.name for p in (two / "out").iterdir()] == [APPROACH]
    assert len(summary_lines(done.stdout)) == len(modes) and summary_lines(done.stdout) == summary_lines(one_stdout)

    client = MlflowClient(tracking_uri=f"sqlite:///{two / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [(r.data.tags["name"], r.data.tags["kind"]) for r in runs] == [(f"evaluate-{APPROACH}", "evaluation")]

    # The main process said how each mode was shared: both processes took part, their shares adding up to all items.
    items = len((one / "out" / APPROACH / "predictions.jsonl").read_text().splitlines()) // len(modes)
    line = re.compile(rf"{APPROACH} (\w+): 2 processes answer (\d+) \+ (\d+) of (\d+) questions")
    shares = {mode: (int(first), int(second), int(total)) for mode, first, second, total in line.findall(done.stderr)}
    assert set(shares) == set(modes), done.stderr
    assert all(first > 0 and second > 0 and first + second == total == items
               for first, second, total in shares.values())
