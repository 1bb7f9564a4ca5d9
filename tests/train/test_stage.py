"""Training stages end to end on the tiny project: lineage, the MLflow parent chain, resume, verification."""

import json
import shutil

import pytest
from transformers import TrainerCallback

from surgvqa.model.lineage import ADAPTER_WEIGHTS, read_lineage, sha256_file
from surgvqa.train.approaches import plan_stage
from surgvqa.train.stage import train_stage
from surgvqa.train.verify import verify_adapter


def _train(tp, approach, stage, models, callbacks=()):
    plan = plan_stage(approach, stage, tp["params"].train, models)
    return train_stage(plan, tp["params"], tp["splits"], tp["raw"], tp["base"], models / ".checkpoints", callbacks)


@pytest.fixture(scope="module")
def curriculum(tiny_project, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    return models, [_train(tiny_project, "curriculum", s, models) for s in (1, 2, 3)]


def test_curriculum_lineage_and_mlflow_parent_chain(tiny_project, curriculum):
    from mlflow.tracking import MlflowClient

    models, records = curriculum
    assert records[0]["parent"] is None
    for prev, rec in zip(records, records[1:]):
        assert rec["parent"]["path"] == str(models / "curriculum" / f"stage_{prev['stage']}")
        assert rec["parent"]["adapter_sha256"] == prev["adapter_sha256"]
        assert rec["parent"]["mlflow_run_id"] == prev["mlflow_run_id"]
        assert rec["params"]["learning_rate"] == \
            tiny_project["params"].train.stage_learning_rates[rec["stage"] - 1]
        # Continued, not restarted: stage N starts where N-1 ended on N-1's validation data.
        assert rec["continuity"]["within_tolerance"] and abs(rec["continuity"]["relative_change"]) < 1e-4
    assert all(r["base"]["content_hash"] == records[0]["base"]["content_hash"] for r in records)
    assert read_lineage(models / "curriculum" / "stage_3") == records[2]

    client = MlflowClient(tracking_uri=tiny_project["params"].tracking.uri)
    chain, run_id = [], records[2]["mlflow_run_id"]
    while run_id != "none":
        run = client.get_run(run_id)
        chain.append(run.data.tags["mlflow.runName"])
        assert run.data.tags["base_model"] == "tiny" and run.data.tags["quantized"] == "false"
        assert set(run.data.metrics) >= {"train_loss", "learning_rate", "val_loss", "val_loss_stage_1",
                                         "val_loss_stage_2", "val_loss_stage_3"}
        assert len(client.get_metric_history(run_id, "train_loss")) >= 2  # per step, not just a summary
        assert any(a.path == "adapter" for a in client.list_artifacts(run_id))
        run_id = run.data.tags["parent_run_id"]
    assert chain == ["curriculum-stage_3", "curriculum-stage_2", "curriculum-stage_1"]


def test_every_adapter_passes_verification(tiny_project, curriculum):
    models, _ = curriculum
    for stage in (1, 2, 3):
        report = verify_adapter(models / "curriculum" / f"stage_{stage}", tiny_project["params"].model)
        assert report.ok, report.text()
    assert "ok      differs from parent" in verify_adapter(models / "curriculum" / "stage_3",
                                                           tiny_project["params"].model).text()


def test_verification_catches_a_swapped_parent_and_an_unchanged_continuation(tiny_project, curriculum, tmp_path):
    models, _ = curriculum
    copy = tmp_path / "models"
    shutil.copytree(models / "curriculum", copy / "curriculum")
    stage_2 = copy / "curriculum" / "stage_2"
    lineage = json.loads((stage_2 / "lineage.json").read_text())
    lineage["parent"]["path"] = str(copy / "curriculum" / "stage_1")
    (stage_2 / "lineage.json").write_text(json.dumps(lineage))
    shutil.copy(models / "curriculum" / "stage_3" / ADAPTER_WEIGHTS, copy / "curriculum" / "stage_1" / ADAPTER_WEIGHTS)
    report = verify_adapter(stage_2, tiny_project["params"].model)
    assert not report.ok and "parent hash" in report.failed_names()

    shutil.copy(stage_2 / ADAPTER_WEIGHTS, copy / "curriculum" / "stage_1" / ADAPTER_WEIGHTS)
    lineage["parent"]["adapter_sha256"] = sha256_file(stage_2 / ADAPTER_WEIGHTS)
    (stage_2 / "lineage.json").write_text(json.dumps(lineage))
    report = verify_adapter(stage_2, tiny_project["params"].model)
    assert report.failed_names() == "differs from parent"


class _Interrupt(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt  # the machine going away right after a checkpoint


def test_an_interrupted_stage_resumes_from_its_last_checkpoint_in_the_same_mlflow_run(tiny_project, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_project, "sequential", 1, models, callbacks=(_Interrupt(),))
    ckpt = models / ".checkpoints" / "sequential" / "stage_1"
    assert (ckpt / "checkpoint-2").is_dir() and not (models / "sequential" / "stage_1").exists()
    first_run = (ckpt / "mlflow_run_id").read_text()

    record = _train(tiny_project, "sequential", 1, models)
    assert record["resumed_from"] == "checkpoint-2" and record["global_step"] == 4
    assert record["mlflow_run_id"] == first_run and record["parent"] is None
    assert not ckpt.exists()  # checkpoints are cleaned up once the adapter is saved
    assert verify_adapter(models / "sequential" / "stage_1", tiny_project["params"].model).ok
