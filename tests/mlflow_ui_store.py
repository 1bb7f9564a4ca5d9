"""An MLflow store holding what a full embedded run logs, built quickly through the pipeline's own logging code:
the seven training runs (tracking.start_run with the training stage's tags), the three evaluation runs
(evaluate.log_evaluation over a copy of the reports/eval/<approach>/ folders), the compare run
(compare.log_comparison over a copy of the compare reports and charts), and a registered model version with the
champion alias. The copy (copy_reports), not the live reports/ that a pipeline run rewrites meanwhile."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

from surgvqa import tracking
from surgvqa.evaluate import compare, evaluate
from surgvqa.io import read_json, read_jsonl
from surgvqa.names import APPROACHES
from surgvqa.params.schema import load_params
from surgvqa.release import registry

REPO = Path(__file__).resolve().parents[1]
ADAPTERS = {"sequential": [1, 2, 3], "curriculum": [1, 2, 3], "baseline": [None]}
REPORTS = ["eval", "charts", "compare.json", "compare.md", "gate.json"]  # what build reads, under reports/


def copy_reports(where: Path) -> Path:
    """A copy of what build reads from the project's reports/, in `where`; returns the copy's reports folder."""
    for name in REPORTS:
        source, target = REPO / "reports" / name, where / "reports" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return where / "reports"


def adapter_name(approach: str, stage: int | None) -> str:
    return approach if stage is None else f"{approach}_{stage}"


def build(uri: str, reports_dir: Path) -> dict:
    """Log the runs and the registered model to `uri` from `reports_dir` (copy_reports). Returns the ids:
    {"training": {name: id}, "evaluation": {approach: id}, "compare": id, "experiment": id, "model": name,
    "version": number, "release": id, "release_name": name}, and "metrics": {approach: the metrics its evaluation
    run logged}."""
    params = load_params(REPO / "params.yaml")
    store = dataclasses.replace(params.tracking, uri=uri)
    training_params = {"model": params.model, "prompt": params.prompt, "lora": params.lora, "train": params.train}
    ids: dict = {"training": {}, "evaluation": {}}
    lineage: dict[str, dict[str, dict]] = {}
    for approach, stages in ADAPTERS.items():
        parent_run = "none"
        for stage in stages:
            name = adapter_name(approach, stage)
            # The adapter's weight hash stands in for real weights: it is what links the runs.
            sha = hashlib.sha256(name.encode()).hexdigest()
            tags = {"approach": approach, "stage": str(stage or "all"), "base_model": params.model.base,
                    "parent_run_id": parent_run if approach == "curriculum" else "none"}
            run_name = f"{approach}-stage_{stage}" if stage else approach
            with tracking.start_run(store, run_name, tags, params=training_params) as run:
                tracking.log_params({"approach": approach, "stage": stage or "all", "lora": vars(params.lora)})
                for step, loss in enumerate((2.0, 1.4, 1.1, 0.9)):
                    tracking.log_metrics({"train_loss": loss}, step=step)
                tracking.set_tags({"adapter_sha256": sha})
            ids["training"][name] = run.info.run_id
            if approach == "curriculum":
                parent_run = run.info.run_id
            lineage.setdefault(approach, {})[name] = {"adapter_sha256": sha, "approach": approach, "stage": stage,
                                                      "base": {"name": params.model.base}}
    evaluate_params = {"model": params.model, "prompt": params.prompt, "categorize": params.categorize,
                       "evaluate": params.evaluate}
    eval_dir = reports_dir / "eval"
    ids["metrics"] = {}
    for approach in APPROACHES:
        out_dir = eval_dir / approach
        metrics = {k: v for k, v in read_json(out_dir / "metrics.json").items()
                   if k not in ("approach", "primary_mode")}
        ids["metrics"][approach] = metrics
        ids["evaluation"][approach] = evaluate.log_evaluation(
            approach, lineage[approach], read_json(out_dir / "report.json"), metrics, out_dir, params.evaluate,
            store, evaluate_params)
    reports = {a: read_json(eval_dir / a / "report.json") for a in APPROACHES}
    predictions = {a: read_jsonl(eval_dir / a / "predictions.jsonl") for a in APPROACHES}
    result = compare.compare(reports, predictions, params.evaluate.confidence)
    charts = sorted((reports_dir / "charts").glob("*.png"))
    ids["compare"] = compare.log_comparison(eval_dir, read_json(reports_dir / "compare.json"),
                                            [reports_dir / "compare.md", reports_dir / "compare.json"],
                                            charts, result, params.evaluate, store)

    client = registry.client_for(uri)
    ids["experiment"] = client.get_experiment_by_name(store.experiment).experiment_id
    name = params.promote.registered_model
    registry.ensure_registered_model(client, name)
    ids["release_name"] = f"release-{params.release.approach}"
    with tracking.start_run(store, ids["release_name"], {"approach": params.release.approach},
                            kind="release") as run:
        tracking.log_file(reports_dir / "gate.json", "model")  # a stand-in: the UI shows the version, not it
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                          tags={"gate.passed": "true", "approach": params.release.approach})
    client.set_registered_model_alias(name, registry.CHAMPION, str(version.version))
    client.set_registered_model_alias(name, registry.CHALLENGER, str(version.version))
    ids |= {"model": name, "version": str(version.version), "release": run.info.run_id}
    return ids
