"""The evaluate and compare stages on the tiny project: reports, metrics, charts and MLflow runs."""

import json

import pytest

from surgvqa.evaluate import compare, evaluate
from surgvqa.io import read_jsonl
from tests.model_fixtures import sections


@pytest.fixture(scope="module")
def evaluated(tiny_project, tiny_adapters, tmp_path_factory):
    project = tiny_project
    out = tmp_path_factory.mktemp("eval")
    table = project["root"] / "categorized" / "question_stages.csv"
    reports = {a: evaluate.run(a, tiny_adapters, project["splits"], project["raw"], table, out / a,
                               **sections(project["params"], evaluate.run))
               for a in ("sequential", "curriculum", "baseline")}
    return out, reports


@pytest.mark.slow
def test_every_item_is_scored_in_both_modes_with_strict_beside_lenient(tiny_project, evaluated):
    out, reports = evaluated
    test = read_jsonl(tiny_project["splits"] / "test.jsonl")
    for approach, report in reports.items():
        rows = read_jsonl(out / approach / "predictions.jsonl")
        assert len(rows) == 2 * len(test) and {r["mode"] for r in rows} == {"context", "independent"}
        assert all(r["lenient"] or not r["strict"] for r in rows)  # strict implies lenient
        assert all(set(r) >= {"question", "stage", "qtype", "prediction", "answer", "strict", "lenient"} for r in rows)
        context = report["modes"]["context"]["overall"]
        assert context["strict"] == sum(r["strict"] for r in rows if r["mode"] == "context") / len(test)
        metrics = json.loads((out / approach / "metrics.json").read_text())
        # Every metric name says its mode; none is left unprefixed for the headline mode.
        assert metrics["context_strict_overall"] == context["strict"] and "independent_strict_overall" in metrics
        assert metrics["primary_mode"] == "context" and "strict_overall" not in metrics
        assert all(k.split("_")[0] in ("context", "independent") for k in metrics if k not in ("approach",
                                                                                               "primary_mode"))
        assert (out / approach / "accuracy.png").stat().st_size > 1000
        assert (out / approach / "per_stage.csv").read_text().startswith(
            "stage,strict_context,lenient_context,strict_independent,lenient_independent,majority")
        assert 0 < report["candidate_ceiling"] <= 1
    forgetting = reports["curriculum"]["forgetting"]
    assert list(forgetting) == ["after_stage_1", "after_stage_2", "after_stage_3"]
    assert all(list(row) == ["stage_1", "stage_2", "stage_3"] for row in forgetting.values())
    assert all(v is None or 0 <= v <= 1 for row in forgetting.values() for v in row.values())


@pytest.mark.slow
def test_routing_ignores_the_stage_column_of_the_evaluated_file(tiny_project, tiny_adapters, tmp_path):
    """Every test row claims stage 3; the answers must still go by the categorizer's table."""
    import csv
    import dataclasses
    import shutil

    from surgvqa.io import write_jsonl

    project = tiny_project
    splits = tmp_path / "split"
    shutil.copytree(project["splits"], splits)
    write_jsonl(splits / "test.jsonl", [r | {"stage_id": 3} for r in read_jsonl(project["splits"] / "test.jsonl")])
    table = project["root"] / "categorized" / "question_stages.csv"
    with table.open(encoding="utf-8") as f:
        stage_of = {r["question"]: int(r["stage"]) for r in csv.DictReader(f)}
    params = dataclasses.replace(project["params"], evaluate=dataclasses.replace(project["params"].evaluate,
                                                                                 modes=["independent"]))
    evaluate.run("sequential", tiny_adapters, splits, project["raw"], table, tmp_path / "out",
                 **sections(params, evaluate.run))
    rows = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert {r["stage"] for r in rows} == {1, 2, 3}
    assert all(r["stage"] == stage_of[r["question"]] and r["adapter"] == f"sequential_{r['stage']}" for r in rows)


@pytest.mark.slow
def test_compare_writes_the_table_charts_and_mlflow_runs(tiny_project, evaluated, tmp_path):
    from mlflow.tracking import MlflowClient

    out, _ = evaluated
    result = compare.run(out, tmp_path / "compare.md", tmp_path / "compare.json", tmp_path / "charts",
                         **sections(tiny_project["params"], compare.run))
    text = (tmp_path / "compare.md").read_text()
    assert "| majority answer per question |" in text and "| sequential vs curriculum |" in text
    assert "Curriculum forgetting" in text and (tmp_path / "charts" / "forgetting.png").is_file()
    assert json.loads((tmp_path / "compare.json").read_text())["sequential.context_strict_overall"] == \
        result["approaches"]["sequential"]["overall"]["strict"]

    client = MlflowClient(tracking_uri=tiny_project["params"].tracking.uri)
    runs = client.search_runs(client.get_experiment_by_name("surgvqa").experiment_id,
                              "tags.kind = 'evaluation'")
    by_approach = {r.data.tags["approach"]: r for r in runs}
    assert set(by_approach) == {"sequential", "curriculum", "baseline"}
    for approach, run in by_approach.items():
        assert {"context_strict_overall", "context_lenient_overall", "context_majority_overall",
                "independent_strict_stage_1"} <= set(run.data.metrics)
        # Each adapter leads to its training run through its weight hash.
        name = "baseline" if approach == "baseline" else f"{approach}_1"
        training_run = client.get_run(run.data.tags["adapter_run." + name])
        assert training_run.data.tags["adapter_sha256"] == run.data.tags["adapter_sha256." + name]
        # sequential and curriculum stage 1 can train identical weights: the link must still be the right run
        assert training_run.data.tags["approach"] == approach
        names = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {"evaluation/report.json", "evaluation/predictions.jsonl"} <= names
        # the chart at the top level, where MLflow's classic Compare page shows it beside the other runs'
        assert "accuracy.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert run.data.tags["kind"] == "evaluation" and run.data.tags["git_commit"]
    assert any(k.startswith("independent_forgetting.") for k in by_approach["curriculum"].data.metrics)
    assert client.search_runs(client.get_experiment_by_name("surgvqa").experiment_id, "tags.kind = 'comparison'")
