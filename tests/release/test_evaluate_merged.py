"""Merge fidelity: a clean float32 merge answers as base + adapters on every item; a merge into 4-bit weights
(forced past the guard here only) is caught by the gate's fidelity thresholds; stale references are refused."""

import dataclasses

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, read_jsonl, write_json
from surgvqa.model.lineage import sha256_file

pytestmark = pytest.mark.slow


def test_a_clean_float32_merge_ties_on_every_item(tiny_release):
    evaluation = read_json(tiny_release["release"] / "evaluation.json")
    fidelity, rows = evaluation["fidelity"], read_jsonl(tiny_release["release"] / "predictions.jsonl")
    unmerged = [r for r in read_jsonl(tiny_release["eval"] / "baseline" / "predictions.jsonl")
                if r["mode"] == "independent"]
    assert len(rows) == len(unmerged) == evaluation["items"] >= 20
    assert fidelity["ties"] == 1.0 and fidelity["identical"] == len(rows)
    assert fidelity["wins"] == fidelity["losses"] == 0 and fidelity["strict_drop"] == 0.0
    assert 0 <= fidelity["max_logit_difference"] < 1e-4 and fidelity["probe_items"] == 16
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in unmerged]
    assert evaluation["metrics"]["strict_overall"] == sum(r["strict"] for r in rows) / len(rows)
    assert evaluation["candidate"]["test_sha256"] == sha256_file(tiny_release["splits"] / "test.jsonl")


def test_a_merge_into_4bit_weights_is_caught_by_the_fidelity_thresholds(tiny_release):
    from peft import PeftModel

    from surgvqa.evaluate.evaluate import load_test_items, score_rows
    from surgvqa.evaluate.metrics import majority_answers
    from surgvqa.infer.engine import AdapterModels, MergedModels
    from surgvqa.infer.generate import load_adapters
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import render_prompt
    from surgvqa.release.candidate import answer, load_candidate
    from surgvqa.release.evaluate_merged import fidelity, largest_difference, probe_logits
    from surgvqa.release.gate import threshold_check

    params, models = tiny_release["params"], tiny_release["models"]
    record = base_record(models / "base")
    four_bit, _ = load_base(record, dataclasses.replace(params.model, quantize="4bit"))
    # What the merge stage refuses: PEFT adds the delta to the 4-bit weights and re-quantizes them.
    broken = PeftModel.from_pretrained(four_bit, str(models / "baseline")).merge_and_unload()
    candidate = load_candidate(tiny_release["merged"], "cpu")
    candidate = dataclasses.replace(candidate, answerer=dataclasses.replace(
        candidate.answerer, models=MergedModels({"model": broken})))
    train_rows, items, answers = load_test_items(tiny_release["splits"], tiny_release["raw"],
                                                 candidate.manifest["serving"]["stage_table"], params.categorize)
    rows = score_rows(items, answer(candidate, items), answers, majority_answers(train_rows), "independent",
                      candidate.route, candidate.evaluate)
    reference = [r for r in read_jsonl(tiny_release["eval"] / "baseline" / "predictions.jsonl")
                 if r["mode"] == "independent"]
    base_model, processor = load_base(record, params.model)
    unmerged = AdapterModels(load_adapters(base_model, {"model": models / "baseline"}))
    probe = [(it.image, render_prompt(it.question, candidate.answerer.prompt_candidates, candidate.prompt), "model")
             for it in items[:8]]
    measured = fidelity(rows, reference) | {"max_logit_difference": largest_difference(
        probe_logits(candidate.answerer.models, processor, probe, None),
        probe_logits(unmerged, processor, probe, None))}
    metrics = {"fidelity_max_logit_difference": measured["max_logit_difference"], "fidelity_ties": measured["ties"]}
    logit = threshold_check("merge fidelity: max logit difference", metrics, "fidelity_max_logit_difference",
                            params.gate.max_logit_difference, False)
    assert not logit["passed"] and "threshold check failed" in logit["detail"]
    assert measured["max_logit_difference"] > 100 * params.gate.max_logit_difference


def test_a_non_finite_logit_makes_the_difference_missing_and_the_gate_fails():
    import torch

    from surgvqa.release.evaluate_merged import largest_difference
    from surgvqa.release.gate import threshold_check

    good, bad = torch.zeros(3, 5), torch.zeros(3, 5)
    bad[1, 2] = float("nan")
    assert largest_difference([good, good + 0.25], [good, good]) == 0.25
    assert largest_difference([good, bad], [good, good]) is None  # max() would have skipped the NaN
    check = threshold_check("merge fidelity: max logit difference", {"fidelity_max_logit_difference": None},
                            "fidelity_max_logit_difference", 1e-3, False)
    assert not check["passed"] and "missing" in check["detail"]


def test_predictions_of_another_test_split_are_refused(tiny_release, tmp_path):
    import shutil

    from surgvqa.release import evaluate_merged

    eval_root = tmp_path / "eval"
    shutil.copytree(tiny_release["eval"], eval_root)
    report = read_json(eval_root / "baseline" / "report.json")
    write_json(eval_root / "baseline" / "report.json", {**report, "test_sha256": "0" * 64})
    with pytest.raises(SurgvqaError, match="they answer another test split.*evaluate@baseline"):
        evaluate_merged.run(tiny_release["merged"], tiny_release["models"], tiny_release["splits"],
                            tiny_release["raw"], eval_root, tmp_path / "out", tiny_release["params"].merge,
                            tiny_release["params"].model)
    assert not (tmp_path / "out").exists()


def test_an_edited_merged_model_is_refused(tiny_release, tmp_path):
    import shutil

    from surgvqa.release.candidate import load_candidate

    merged = tmp_path / "merged"
    shutil.copytree(tiny_release["merged"], merged)
    with (merged / "model" / "model.safetensors").open("r+b") as f:
        f.truncate(f.seek(0, 2) - 16)
    with pytest.raises(SurgvqaError, match="the merged model changed after the merge; rerun `dvc repro merge`"):
        load_candidate(merged, "cpu")
