"""Training stages end to end on the tiny project: lineage, the MLflow parent chain, resume, verification,
divergence, and the same bytes for the same inputs."""

import dataclasses
import json
import shutil

import pytest
from transformers import TrainerCallback

from surgvqa.errors import SurgvqaError
from surgvqa.model.lineage import ADAPTER_WEIGHTS, LINEAGE_FILE, read_lineage, sha256_file
from surgvqa.train.approaches import plan_stage
from surgvqa.train.train import train_stage
from surgvqa.train.verify import verify_adapter
from tests.model_fixtures import sections


def _train(project, approach, stage, models, callbacks=(), **train_changes):
    params = project["params"]
    train = dataclasses.replace(params.train, **train_changes)
    plan = plan_stage(approach, stage, train, models)
    return train_stage(plan, project["splits"], project["raw"], project["base"], models / ".checkpoints",
                       **(sections(params, train_stage) | {"train": train}), callbacks=callbacks)


@pytest.fixture(scope="module")
def curriculum(tiny_project, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    return models, [_train(tiny_project, "curriculum", s, models) for s in (1, 2, 3)]


def _client(project):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=project["params"].tracking.uri)


def test_curriculum_lineage_and_mlflow_parent_chain(tiny_project, curriculum):
    from surgvqa.tracking import find_adapter_run

    models, results = curriculum
    records = [r["lineage"] for r in results]
    assert records[0]["parent"] is None
    for prev, rec in zip(records, records[1:]):
        assert rec["parent"] == {"path": str(models / "curriculum" / f"stage_{prev['stage']}"),
                                 "adapter_sha256": prev["adapter_sha256"]}
        assert rec["params"]["learning_rate"] == \
            tiny_project["params"].train.stage_learning_rates[rec["stage"] - 1]
        # Continued, not restarted: stage N starts where N-1 ended on N-1's validation data.
        assert rec["continuity"]["within_tolerance"] and abs(rec["continuity"]["relative_change"]) < 1e-4
    assert all(r["base"]["content_hash"] == records[0]["base"]["content_hash"] for r in records)
    assert read_lineage(models / "curriculum" / "stage_3") == records[2]

    # The lineage holds no run id; each adapter finds its run through the weight hash, and the run its parent's.
    client = _client(tiny_project)
    run_id = find_adapter_run(tiny_project["params"].tracking, records[2])
    assert run_id == results[2]["run"]["mlflow_run_id"]
    chain = []
    while run_id != "none":
        run = client.get_run(run_id)
        chain.append(run.data.tags["name"])
        assert run.data.tags["kind"] == "training" and len(run.data.tags["params_digest"]) == 8
        assert run.data.tags["mlflow.runName"] == f"{run.data.tags['name']} ({run.data.tags['params_digest']})"
        assert run.data.tags["adapter_sha256"] == records[3 - len(chain)]["adapter_sha256"]
        assert run.data.tags["git_commit"] and "final_train_loss" in run.data.metrics
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
    text = verify_adapter(models / "curriculum" / "stage_3", tiny_project["params"].model).text()
    assert "ok      differs from parent" in text and "ok      continuity" in text


def test_a_continuity_break_beyond_tolerance_fails_verification_with_the_measured_jump(tiny_project, curriculum,
                                                                                     tmp_path):
    """The parent's record says it ended at half the validation loss its weights give: continuing it jumps."""
    models, _ = curriculum
    copy = tmp_path / "models"
    shutil.copytree(models / "curriculum" / "stage_1", copy / "curriculum" / "stage_1")
    parent = json.loads((copy / "curriculum" / "stage_1" / LINEAGE_FILE).read_text())
    parent["val_loss_by_stage"]["1"] /= 2
    (copy / "curriculum" / "stage_1" / LINEAGE_FILE).write_text(json.dumps(parent))
    result = _train(tiny_project, "curriculum", 2, copy)
    continuity = result["lineage"]["continuity"]  # recorded in the lineage, measured before training
    assert continuity["relative_change"] == pytest.approx(1.0, rel=1e-3) and not continuity["within_tolerance"]
    report = verify_adapter(copy / "curriculum" / "stage_2", tiny_project["params"].model)
    assert report.failed_names() == "continuity"
    assert "moved +100.00% from the parent's end" in report.text() and "tolerance 10%" in report.text()


def test_retraining_on_the_same_inputs_gives_the_same_bytes(tiny_project, tmp_path):
    """The lineage is part of the DVC output: no run id, commit or resume in it, so DVC sees no change."""
    first = _train(tiny_project, "sequential", 2, tmp_path / "a")
    second = _train(tiny_project, "sequential", 2, tmp_path / "a")  # the same folder, retrained
    folder = tmp_path / "a" / "sequential" / "stage_2"
    assert first["run"]["mlflow_run_id"] != second["run"]["mlflow_run_id"]
    assert first["lineage"] == second["lineage"] == read_lineage(folder)
    assert json.dumps(first["lineage"]).count(first["run"]["mlflow_run_id"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json", ADAPTER_WEIGHTS,
                                                         LINEAGE_FILE]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # What a kill mid-save leaves beside the adapter: a half-written hidden folder, which the rerun replaces.
    leftover = folder.with_name(f".{folder.name}.partial")
    leftover.mkdir()
    (leftover / ADAPTER_WEIGHTS).write_bytes(b"cut short")
    _train(tiny_project, "sequential", 2, tmp_path / "a")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["stage_2"]  # nothing half-written or set aside remains


class _Diverge(TrainerCallback):
    """Writes NaN into the adapter's weights at a chosen point: what a too-high learning rate does."""

    def __init__(self, after_step=None, at_end=False):
        self.after_step, self.at_end = after_step, at_end

    def _poison(self, model):
        import torch

        with torch.no_grad():
            next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.after_step:
            self._poison(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_end:
            self._poison(model)


def test_a_nan_training_loss_fails_the_stage_naming_the_step_and_writes_no_adapter(tiny_project, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(SurgvqaError, match=r"sequential/stage_1: the training loss is nan at step 3; training "
                                           "diverged and no adapter was written"):
        _train(tiny_project, "sequential", 1, models, callbacks=(_Diverge(after_step=2),), save_steps=100)
    assert not (models / "sequential" / "stage_1").exists()
    client = _client(tiny_project)
    runs = client.search_runs([client.get_experiment_by_name("surgvqa").experiment_id],
                              "tags.name = 'sequential-stage_1'", order_by=["attributes.start_time DESC"])
    failed = runs[0]
    assert failed.info.status == "FAILED" and "adapter_sha256" not in failed.data.tags
    history = client.get_metric_history(failed.info.run_id, "train_loss")
    assert any(m.step == 3 and m.value != m.value for m in history)  # the NaN is in MLflow, not dropped


def test_a_nan_validation_loss_fails_the_stage_and_writes_no_adapter(tiny_project, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(SurgvqaError, match=r"sequential/stage_3: the validation loss on stage 1 is nan at step 4"):
        _train(tiny_project, "sequential", 3, models, callbacks=(_Diverge(at_end=True),))
    assert not (models / "sequential" / "stage_3").exists()


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

    result = _train(tiny_project, "sequential", 1, models)
    assert result["run"]["resumed_from"] == "checkpoint-2" and result["lineage"]["global_step"] == 4
    assert result["run"]["mlflow_run_id"] == first_run and result["lineage"]["parent"] is None
    assert not ckpt.exists()  # checkpoints are cleaned up once the adapter is saved
    assert verify_adapter(models / "sequential" / "stage_1", tiny_project["params"].model).ok


def test_checkpoints_of_other_inputs_are_discarded_not_resumed(tiny_project, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_project, "sequential", 1, models, callbacks=(_Interrupt(),))
    # The learning rate changed since the interruption: resuming would mix two runs into one adapter.
    result = _train(tiny_project, "sequential", 1, models, sequential_learning_rate=2e-3)
    assert result["run"]["resumed_from"] is None and result["lineage"]["params"]["learning_rate"] == 2e-3
