"""DVC stage `evaluate_merged`: score the merged candidate itself, and measure how faithfully it answers as the
base + adapters it was merged from.

A merged model can answer differently from base + adapter (a merge into 4-bit weights, a dtype, a template),
so the gate tests the merged artifact, not the adapters. The candidate answers the test split through the same
engine, the same decoding and the serving settings frozen in its manifest, in the release's mode; its answers
are set beside the unmerged adapters' answers to the same items (reports/eval/<approach>/predictions.jsonl),
which are refused when they came from other adapters or another test split.

Writes reports/release/predictions.jsonl (scored like the evaluation's) and reports/release/evaluation.json:
the candidate's metrics, and its fidelity: the share of identical answers ("ties"), wins and losses against
the unmerged answers' correctness, the strict accuracy drop, and the largest logit difference on a fixed probe
batch (the first `merge.probe_items` test items).

Started as several processes (`torchrun --nproc_per_node N -m surgvqa.release.evaluate_merged ...`), each answers
a share of the images; only the main process runs the probe and writes the reports.
"""

from __future__ import annotations

from pathlib import Path

from surgvqa import distributed, entry
from surgvqa.data.raw import RAW_DIR
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, read_jsonl, write_json, write_jsonl
from surgvqa.model.lineage import LINEAGE_FILE, sha256_file
from surgvqa.params.merge import MergeParams
from surgvqa.params.model import ModelParams
from surgvqa.release.files import EVALUATION, PREDICTIONS, released_adapters
from surgvqa.release.memory import free_memory


def unmerged_rows(eval_dir: Path, merged_dir: Path, manifest: dict, items: list, test_sha256: str) -> list[dict]:
    """The unmerged adapters' scored answers to the same items in the release's mode, refused when stale."""
    report = read_json(eval_dir / "report.json", hint=f"run `dvc repro evaluate@{manifest['approach']}` first")
    merged_from = {read_json(merged_dir / name / LINEAGE_FILE)["adapter"]["adapter_sha256"]
                   for name in manifest["models"]}
    problems = []
    if report["approach"] != manifest["approach"]:
        problems.append(f"they are {report['approach']}'s, the candidate is {manifest['approach']}")
    if not merged_from <= set(report.get("adapter_sha256", {}).values()):
        problems.append("they came from other adapter weights than the ones merged")
    if report.get("test_sha256") != test_sha256:
        problems.append("they answer another test split")
    if report["decoding"] != manifest["serving"]["evaluate"]["decoding"]:
        problems.append(f"they decoded {report['decoding']}, the candidate decodes "
                        f"{manifest['serving']['evaluate']['decoding']}")
    rows = [r for r in read_jsonl(eval_dir / PREDICTIONS) if r["mode"] == manifest["mode"]]
    if not rows:
        problems.append(f"none is in {manifest['mode']} mode, the release's: add it to evaluate.modes")
    elif [(r["img_id"], r["question"]) for r in rows] != [(it.img_id, it.question) for it in items]:
        problems.append(f"their {manifest['mode']}-mode items are not the test split's")
    if problems:
        raise SurgvqaError(f"{eval_dir}: the unmerged predictions cannot be compared with the merged candidate: "
                           f"{'; '.join(problems)}. Rerun `dvc repro evaluate@{manifest['approach']}`")
    return rows


def fidelity(merged: list[dict], unmerged: list[dict]) -> dict:
    """How the merged answers compare with the unmerged ones on the same items: identical answers, and paired
    wins/losses of strict correctness (merged right where unmerged was wrong, and the reverse)."""
    from surgvqa.evaluate.stats import accuracy, paired

    if len(merged) != len(unmerged) or not merged:
        raise SurgvqaError(f"fidelity needs the same non-empty items: {len(merged)} merged vs {len(unmerged)}")
    identical = sum(m["prediction"] == u["prediction"] for m, u in zip(merged, unmerged))
    result = paired([m["strict"] for m in merged], [u["strict"] for u in unmerged])
    merged_strict, unmerged_strict = accuracy([m["strict"] for m in merged]), accuracy([u["strict"] for u in unmerged])
    return {"items": len(merged), "identical": identical, "ties": identical / len(merged), "wins": result.wins,
            "losses": result.losses, "both_right": result.ties_both_right, "both_wrong": result.ties_both_wrong,
            "p_value": result.p_value, "merged_strict": merged_strict, "unmerged_strict": unmerged_strict,
            "strict_drop": unmerged_strict - merged_strict}


def prompt_logits(model, processor, image: Path, prompt: str, system: str | None):
    """The model's float32 logits over one prompt's every position, the plain way (processor, one forward)."""
    import torch

    from surgvqa.model.sft import chat_text, load_image

    enc = processor(text=[chat_text(processor, prompt, system)], images=[load_image(image)],
                    return_tensors="pt").to(next(model.parameters()).device)
    with torch.inference_mode():
        return model(**enc).logits[0].float().cpu()


def probe_logits(models, processor, probe: list[tuple[Path, str, str]], system: str | None) -> list:
    """Each probe (image, prompt, model name)'s logits from an engine model set (AdapterModels / MergedModels)."""
    logits = []
    for image, prompt, name in probe:
        model, _ = models.use(name)
        logits.append(prompt_logits(model, processor, image, prompt, system))
    return logits


def largest_difference(merged: list, unmerged: list) -> float | None:
    """The largest |logit| difference over the probe; None (which the gate fails as missing) when any logit is not
    finite, since max() over NaN would silently skip it."""
    import math

    largest = 0.0
    for left, right in zip(merged, unmerged, strict=True):
        difference = (left - right).abs().max().item()
        if not math.isfinite(difference):
            return None
        largest = max(largest, difference)
    return largest


def candidate_metrics(summary: dict) -> dict[str, float | None]:
    """The gate's metric names over a summary: strict overall and per stage, lenient and majority beside."""
    overall = summary["overall"]
    low, high = overall["strict_ci"] or (None, None)
    return {"strict_overall": overall["strict"], "strict_overall_ci_low": low, "strict_overall_ci_high": high,
            "lenient_overall": overall["lenient"], "majority_overall": overall["majority"],
            **{f"strict_stage_{s}": v["strict"] for s, v in summary["stage"].items()}}


def run(merged_dir: Path, models_dir: Path, splits_dir: Path, raw_dir: Path, eval_root: Path, out_dir: Path,
        merge: MergeParams, model: ModelParams) -> dict | None:
    """The stage: answer the test split with the merged candidate, score it, compare it with base + adapters.
    Started as several processes, the others help answer and return None: the main one writes and returns."""
    from surgvqa.evaluate.evaluate import load_test_items, score_rows
    from surgvqa.evaluate.metrics import majority_answers, summarise
    from surgvqa.infer.engine import AdapterModels
    from surgvqa.infer.generate import load_adapters
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import render_prompt
    from surgvqa.release.candidate import answer, load_candidate

    candidate = load_candidate(merged_dir, model.device)
    manifest, test_sha256 = candidate.manifest, sha256_file(splits_dir / "test.jsonl")
    train_rows, items, answers = load_test_items(splits_dir, raw_dir, manifest["serving"]["stage_table"],
                                                 candidate.categorize)
    reference = unmerged_rows(eval_root / manifest["approach"], merged_dir, manifest, items, test_sha256)
    predictions = answer(candidate, items, desc=f"merged {manifest['approach']} {candidate.mode}")
    if not distributed.is_main():  # its answers are in the main process's predictions
        return None
    rows = score_rows(items, predictions, answers, majority_answers(train_rows), candidate.mode, candidate.route,
                      candidate.evaluate)

    probe = [(it.image, render_prompt(it.question, candidate.answerer.prompt_candidates, candidate.prompt),
              candidate.route[it.stage]) for it in items[: merge.probe_items]]
    processor, system = candidate.answerer.processor, candidate.prompt.system
    summary = summarise(rows, candidate.evaluate)
    merged_logits = probe_logits(candidate.answerer.models, processor, probe, system)
    del candidate  # the merged models leave memory before base + adapters arrive
    free_memory()
    # The probe compares with base + adapters loaded as the evaluation loaded them (model params: 4-bit for QLoRA,
    # model.dtype), so on a GPU it measures the merge together with any dtype change: the reference is recorded.
    adapters, _ = released_adapters(manifest["approach"], models_dir)
    base_model, _ = load_base(base_record(models_dir / "base"), model)
    unmerged = AdapterModels(load_adapters(base_model, adapters))
    result = fidelity(rows, reference) | {
        "max_logit_difference": largest_difference(merged_logits, probe_logits(unmerged, processor, probe, system)),
        "probe_items": len(probe),
        "reference": {"dtype": str(next(base_model.parameters()).dtype).replace("torch.", ""),
                      "quantize": model.quantize}}
    mode = manifest["mode"]
    evaluation = {"candidate": {"approach": manifest["approach"], "mode": mode,
                                "merged_sha256": manifest["merged_sha256"], "test_sha256": test_sha256,
                                "decoding": manifest["serving"]["evaluate"]["decoding"]},
                  "items": len(rows), "metrics": candidate_metrics(summary), "fidelity": result,
                  "stage": summary["stage"], "qtype": summary["qtype"]}
    # evaluation.json, the gate's input, is written last and the old one removed first: a kill between the two
    # writes leaves no evaluation for the gate to take as this candidate's, never an old one beside new predictions.
    (out_dir / EVALUATION).unlink(missing_ok=True)
    write_jsonl(out_dir / PREDICTIONS, rows)
    write_json(out_dir / EVALUATION, evaluation)
    return evaluation


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.release.evaluate_merged` (dvc.yaml) and `surgvqa evaluate-merged`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--merged", type=Path, default=Path("models/merged"))
    parser.add_argument("--models", type=Path, default=Path("models"), help="holds base/ and the adapters")
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw layout (default: {RAW_DIR})")
    parser.add_argument("--eval", type=Path, default=Path("reports/eval"),
                        help="holds <approach>/predictions.jsonl of the unmerged adapters")
    parser.add_argument("--out", type=Path, default=Path("reports/release"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, merged_dir=args.merged, models_dir=args.models,
                      splits_dir=args.splits, raw_dir=args.raw, eval_root=args.eval, out_dir=args.out)


def _summary(evaluation: dict) -> None:
    metrics, fid = evaluation["metrics"], evaluation["fidelity"]
    print(f"merged {evaluation['candidate']['approach']} ({evaluation['candidate']['mode']} mode): strict "
          f"{metrics['strict_overall']:.3f} on {evaluation['items']} items; fidelity: {fid['ties']:.1%} identical "
          f"answers, {fid['wins']} wins / {fid['losses']} losses against base + adapters, strict drop "
          f"{fid['strict_drop']:+.3f}, max logit difference {fid['max_logit_difference']:.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
