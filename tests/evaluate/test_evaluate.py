"""The evaluate and compare stages on the tiny project: reports, metrics, charts and MLflow runs."""

import json

import pytest

from surgvqa.evaluate import compare, evaluate
from surgvqa.io import read_jsonl


@pytest.fixture(scope="module")
def evaluated(tiny_project, tiny_adapters, tmp_path_factory):
    tp = tiny_project
    out = tmp_path_factory.mktemp("eval")
    reports = {a: evaluate.run(a, tiny_adapters, tp["splits"], tp["raw"],
                               tp["root"] / "categorized" / "question_stages.csv", out / a, tp["params"])
               for a in ("sequential", "curriculum", "baseline")}
    return out, reports


@pytest.mark.slow
def test_every_item_is_scored_in_both_modes_with_strict_beside_lenient(tiny_project, evaluated):
    out, reports = evaluated
    test = read_jsonl(tiny_project["splits"] / "test.jsonl")
    for approach, report in reports.items():
        rows = read_jsonl(out / approach / "predictions.jsonl")
        assert len(rows) == 2 * len(test) and {r["mode"] for r in rows} == {"sequential", "independent"}
        assert all(r["lenient"] or not r["strict"] for r in rows)  # strict implies lenient
        assert all(set(r) >= {"question", "stage", "qtype", "prediction", "answer", "strict", "lenient"} for r in rows)
        seq = report["modes"]["sequential"]["overall"]
        assert seq["strict"] == sum(r["strict"] for r in rows if r["mode"] == "sequential") / len(test)
        metrics = json.loads((out / approach / "metrics.json").read_text())
        assert metrics["strict_overall"] == seq["strict"] and "independent_strict_overall" in metrics
        assert (out / approach / "accuracy.png").stat().st_size > 1000
        assert (out / approach / "per_stage.csv").read_text().startswith("mode,stage,strict,lenient,majority")
    forgetting = reports["curriculum"]["forgetting"]
    assert list(forgetting) == ["after_stage_1", "after_stage_2", "after_stage_3"]
    final = reports["curriculum"]["modes"]["independent"]["stage"]  # the final adapter, no context
    assert all(forgetting["after_stage_3"][f"stage_{s}"] == final[s]["strict"] for s in final)


@pytest.mark.slow
def test_compare_writes_the_table_charts_and_mlflow_runs(tiny_project, evaluated, tmp_path):
    from mlflow.tracking import MlflowClient

    out, _ = evaluated
    result = compare.run(out, tmp_path / "compare.md", tmp_path / "compare.json", tmp_path / "charts",
                         tiny_project["params"])
    text = (tmp_path / "compare.md").read_text()
    assert "| majority answer per question |" in text and "| sequential vs curriculum |" in text
    assert "Curriculum forgetting" in text and (tmp_path / "charts" / "forgetting.png").is_file()
    assert json.loads((tmp_path / "compare.json").read_text())["sequential.strict_overall"] == \
        result["approaches"]["sequential"]["overall"]["strict"]

    client = MlflowClient(tracking_uri=tiny_project["params"].tracking.uri)
    runs = client.search_runs(client.get_experiment_by_name("surgvqa").experiment_id,
                              "tags.kind = 'evaluation'")
    by_approach = {r.data.tags["approach"]: r for r in runs}
    assert set(by_approach) == {"sequential", "curriculum", "baseline"}
    for approach, run in by_approach.items():
        assert {"strict_overall", "lenient_overall", "majority_overall", "strict_stage_1"} <= set(run.data.metrics)
        assert run.data.tags["adapter_run." + ("baseline" if approach == "baseline" else f"{approach}_3")]
        names = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {"evaluation/accuracy.png", "evaluation/report.json", "evaluation/predictions.jsonl"} <= names
    assert any(k.startswith("forgetting.") for k in by_approach["curriculum"].data.metrics)
    assert client.search_runs(client.get_experiment_by_name("surgvqa").experiment_id, "tags.kind = 'comparison'")
