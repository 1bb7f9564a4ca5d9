"""Broken model files, each an error naming the file and the fix: a corrupted or truncated adapter, a truncated
merged model or base, a lineage whose parent adapter is gone, an adapter replaced by hand. (A DVC cache miss is
in test_kill_resume.py, on a real DVC project.)"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.model.lineage import ADAPTER_WEIGHTS, check_adapter_files
from surgvqa.train.verify import verify_adapter
from tests.model_fixtures import sections

pytestmark = pytest.mark.slow


def copy_models(tiny_adapters: Path, where: Path, *names: str) -> Path:
    """A copy of the tiny adapters (and base) under where/models, parents pointing inside the copy."""
    models = where / "models"
    for name in ("base", *names):
        shutil.copytree(tiny_adapters / name, models / name)
    for lineage_file in models.rglob("lineage.json"):
        record = json.loads(lineage_file.read_text())
        if record.get("parent"):
            record["parent"]["path"] = record["parent"]["path"].replace(str(tiny_adapters), str(models))
            lineage_file.write_text(json.dumps(record))
    return models


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # inside the last tensor's data: the header still parses
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(f.seek(0, 2) // 2)


def restore_fix(folder: Path, stage: str) -> str:
    return (f"rerun `dvc repro {stage}` or restore it with `dvc checkout {folder}` (`dvc pull {folder}` when the DVC "
            "cache lacks it)")


def test_a_corrupted_adapter_fails_verification_naming_the_file_and_the_fix(tiny_project, tiny_adapters, tmp_path):
    from surgvqa.train import verify

    adapter = copy_models(tiny_adapters, tmp_path, "baseline") / "baseline"
    flip_a_byte(adapter / ADAPTER_WEIGHTS)
    report = verify_adapter(adapter, tiny_project["params"].model)
    assert report.failed_names() == "adapter hash"
    detail = next(d for n, s, d in report.checks if n == "adapter hash")
    assert str(adapter / ADAPTER_WEIGHTS) in detail and restore_fix(adapter, "train_baseline") in detail
    with pytest.raises(SurgvqaError, match=re.escape(f"verification failed: {adapter} (adapter hash); each FAILED "
                                                     "line above names the file and the fix")):
        verify.run([adapter], None, tiny_project["params"].model)
    # The evaluation refuses it before loading anything.
    with pytest.raises(SurgvqaError, match=re.escape(f"{adapter / ADAPTER_WEIGHTS} hashes ")) as e:
        check_adapter_files(adapter)
    assert "the file changed after training" in str(e.value) and restore_fix(adapter, "train_baseline") in str(e.value)


def test_a_truncated_adapter_is_an_error_naming_the_file_not_a_traceback(tiny_project, tiny_adapters, tmp_path):
    from surgvqa.evaluate import evaluate

    models = copy_models(tiny_adapters, tmp_path, "baseline")
    adapter = models / "baseline"
    truncate(adapter / ADAPTER_WEIGHTS)
    expected = (f"{adapter / ADAPTER_WEIGHTS} is not a readable safetensors file (Error while deserializing "
                f"header: incomplete metadata, file not fully covered; truncated or corrupted): "
                f"{restore_fix(adapter, 'train_baseline')}")
    with pytest.raises(SurgvqaError, match=re.escape(expected)):
        verify_adapter(adapter, tiny_project["params"].model)
    params, root = tiny_project["params"], tiny_project["root"]
    with pytest.raises(SurgvqaError, match=re.escape(expected)):
        evaluate.run("baseline", models, tiny_project["splits"], tiny_project["raw"],
                     root / "categorized" / "question_stages.csv", tmp_path / "eval", **sections(params, evaluate.run))
    assert not (tmp_path / "eval").exists()


def test_a_truncated_or_edited_merged_model_names_the_file_and_the_fix(tiny_release, tmp_path):
    from surgvqa.release.candidate import load_candidate

    merged = tmp_path / "merged"
    shutil.copytree(tiny_release["merged"], merged)
    weights = merged / "model" / "model.safetensors"
    original = weights.read_bytes()
    fix = restore_fix(merged, "merge")
    truncate(weights)
    with pytest.raises(SurgvqaError, match=re.escape(f"{weights} is not a readable safetensors file")) as e:
        load_candidate(merged, "cpu")
    assert str(e.value).endswith(f"the merged model changed after the merge; {fix}")
    weights.write_bytes(original)
    flip_a_byte(weights)  # still a readable file: only the recorded hash tells
    with pytest.raises(SurgvqaError, match=re.escape(f"{merged / 'model'}: files hash ")) as e:
        load_candidate(merged, "cpu")
    assert str(e.value).endswith(f"the merged model changed after the merge; {fix}")


def test_a_truncated_base_is_an_error_naming_the_file(tiny_project, tiny_adapters, tmp_path):
    from surgvqa.model.load import base_record, load_base

    models = copy_models(tiny_adapters, tmp_path)
    truncate(models / "base" / "model.safetensors")
    record = {**base_record(models / "base"), "source": str(models / "base")}
    with pytest.raises(SurgvqaError, match=re.escape(f"{models / 'base' / 'model.safetensors'} is not a readable "
                                                     "safetensors file")) as e:
        load_base(record, tiny_project["params"].model)
    assert str(e.value).endswith(restore_fix(models / "base", "base"))


def test_a_lineage_whose_parent_adapter_is_missing_names_the_parent_and_the_fix(tiny_project, tiny_adapters,
                                                                                 tmp_path, monkeypatch):
    from surgvqa.train import train

    models = copy_models(tiny_adapters, tmp_path, "curriculum")
    parent = models / "curriculum" / "stage_1"
    shutil.rmtree(parent)
    report = verify_adapter(models / "curriculum" / "stage_2", tiny_project["params"].model)
    assert report.failed_names() == "parent exists"
    detail = next(d for n, s, d in report.checks if n == "parent exists")
    assert detail == f"{parent / ADAPTER_WEIGHTS} does not exist: {restore_fix(parent, 'train_curriculum@1')}"
    # Training the next stage from it stops before the base loads (minutes on a GPU), naming the parent.
    def base_loaded(*args, **kwargs):
        raise AssertionError("the base was loaded before the parent adapter was checked")

    monkeypatch.setattr(train, "load_base", base_loaded)
    with pytest.raises(SurgvqaError, match=re.escape(f"adapter folder {parent} does not exist: "
                                                     f"{restore_fix(parent, 'train_curriculum@1')}")):
        train.run("curriculum", 2, tiny_project["splits"], tiny_project["raw"], models / "base", models,
                  tmp_path / "checkpoints", **sections(tiny_project["params"], train.run))
    # The same for a parent whose weights are no longer the ones its lineage records.
    shutil.copytree(tiny_adapters / "curriculum" / "stage_1", parent)
    flip_a_byte(parent / ADAPTER_WEIGHTS)
    with pytest.raises(SurgvqaError, match=re.escape(f"{parent / ADAPTER_WEIGHTS} hashes ")):
        train.run("curriculum", 2, tiny_project["splits"], tiny_project["raw"], models / "base", models,
                  tmp_path / "checkpoints", **sections(tiny_project["params"], train.run))


def test_an_adapter_replaced_by_hand_is_caught_by_its_lineage_hash(tiny_project, tiny_adapters, tmp_path):
    """models/ edited by hand: one valid adapter's weights copied over another's. Every file still loads; the
    lineage's adapter_sha256 no longer matches, and verification (so the merge) and the evaluation refuse it."""
    from surgvqa.release import merge

    models = copy_models(tiny_adapters, tmp_path, "sequential")
    adapter = models / "sequential" / "stage_1"
    shutil.copy(models / "sequential" / "stage_2" / ADAPTER_WEIGHTS, adapter / ADAPTER_WEIGHTS)
    report = verify_adapter(adapter, tiny_project["params"].model)
    assert report.failed_names() == "adapter hash"
    with pytest.raises(SurgvqaError, match=re.escape(f"{adapter} fails verify-adapter (adapter hash)")):
        merge.check_adapter(adapter, json.loads((models / "base" / "base.json").read_text()),
                            tiny_project["params"].model)
    with pytest.raises(SurgvqaError, match=re.escape(f"{adapter / ADAPTER_WEIGHTS} hashes ")) as e:
        check_adapter_files(adapter)
    assert restore_fix(adapter, "train_sequential@1") in str(e.value)
