"""The `surgvqa` command: one subcommand per pipeline stage (DVC calls these) plus data helpers.

Imports are lazy: peft, Great Expectations and MLflow each take seconds to import, and `surgvqa --help` or a
data stage should not pay for them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from surgvqa.errors import SurgvqaError


def _cmd_sample(args, params) -> None:
    from surgvqa.data.sample import make_sample

    images = args.images if args.images is not None else params.data.sample.images
    seed = args.seed if args.seed is not None else params.data.sample.seed
    out = Path(args.out or params.data.raw_dir)
    info = make_sample(out, images=images, seed=seed)
    print(f"sample: {info['images']} images, {info['rows']} QA rows (seed {info['seed']}) -> {out}")


def _cmd_import(args, params) -> None:
    from surgvqa.data.importer import import_dataset

    report = import_dataset(Path(args.source), Path(args.to or params.data.raw_dir),
                            Path(args.images) if args.images else None)
    print(f"import: {report['rows_written']} of {report['rows_read']} rows, {report['images_written']} images; "
          f"skipped {report['skipped_by_reason'] or 'none'} (details: {report['skipped_file']})")


def _dvc_remotes() -> list[str]:
    try:
        out = subprocess.run(["dvc", "remote", "list"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SurgvqaError(f"could not ask DVC for its remotes ({e}); is dvc installed and is this a DVC repo?")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _cmd_ensure(args, params) -> None:
    raw_dir = Path(params.data.raw_dir)
    if (raw_dir / "metadata.csv").is_file():
        print(f"data: {raw_dir} is present")
        return
    if raw_dir.exists() and any(raw_dir.iterdir()):
        raise SurgvqaError(f"{raw_dir} exists but has no metadata.csv: remove it, or fill it with "
                           "`surgvqa data import --from PATH`")
    remotes = _dvc_remotes()
    if remotes:
        print(f"data: {raw_dir} is missing; pulling it from DVC remote {remotes[0]}")
        if subprocess.run(["dvc", "pull", "data.dvc"]).returncode != 0:
            raise SurgvqaError(f"`dvc pull data.dvc` from remote {remotes[0]} failed (see above): check the "
                               "remote's credentials and that the data was pushed (`dvc push data.dvc`)")
        return
    print(f"data: {raw_dir} is missing and no DVC remote is configured; generating the embedded sample")
    _cmd_sample(argparse.Namespace(images=None, seed=None, out=None), params)


def _cmd_ingest(args, params) -> None:
    from surgvqa.data.ingest import run

    r = run(Path(args.raw or params.data.raw_dir), Path(args.out), Path(args.report), params.ingest.max_bad_fraction)
    print(f"ingest: {r['rows_ok']} rows kept, {r['rows_quarantined']} quarantined {r['quarantined_by_reason']}; "
          f"{r['images_ok']}/{r['images_referenced']} images decodable")


def _cmd_categorize(args, params) -> None:
    from surgvqa.data.categorize import run

    r = run(Path(args.qa), Path(args.out), Path(args.report), params.categorize)
    print(f"categorize ({r['backend']}): {r['unique_questions']} questions, row shares {r['row_share_per_stage']}, "
          f"gold agreement {r['gold_agreement']}, unparsed {r['unparsed_replies']}")


def _cmd_convert(args, params) -> None:
    from surgvqa.data.convert import run

    r = run(Path(args.inline), Path(args.out), Path(args.report), params.convert.max_bad_fraction)
    print(f"convert: {r['qa_rows']} QA rows from {r['records_total']} records; rejected {r['records_rejected']}")


def _cmd_split(args, params) -> None:
    from surgvqa.data.split import run

    r = run(Path(args.cxrtrek), Path(args.out), Path(args.report), params.split)
    print("split: " + ", ".join(f"{k} {v['images']} images / {v['rows']} rows" for k, v in r.items()))


def _cmd_validate(args, params) -> None:
    from surgvqa.data.expectations import run

    run(Path(args.splits), Path(args.raw or params.data.raw_dir), Path(args.report), params.validate.stage_share)


def _cmd_base(args, params) -> None:
    from surgvqa.model.base import run

    r = run(Path(args.out), Path(args.train), Path(args.raw or params.data.raw_dir), Path(args.report), params)
    extra = f", pretraining {r['pretraining']}" if r.get("pretraining") else ""
    print(f"base: {r['name']} ({r['kind']}), weights {r['content_hash'][:12]}{extra}")


def _cmd_train(args, params) -> None:
    from surgvqa.train.approaches import plan_stage
    from surgvqa.train.stage import train_stage

    plan = plan_stage(args.approach, args.stage, params.train, Path(args.models))
    r = train_stage(plan, params, Path(args.splits), Path(args.raw or params.data.raw_dir), Path(args.base),
                    Path(args.checkpoints))
    print(f"train {plan.name}: {r['global_step']} steps, train loss {r['final_train_loss']:.4f}, val loss "
          f"{r['val_loss']:.4f}, by stage {r['val_loss_by_stage']} -> {plan.out_dir} (MLflow run {r['mlflow_run_id']})")


def _cmd_verify(args, params) -> None:
    from surgvqa.train.verify import verify_adapter

    reports = [verify_adapter(Path(a), params.model) for a in args.adapter]
    for r in reports:
        print(r.text())
    if args.report:
        from surgvqa.io import write_json

        write_json(Path(args.report), {"adapters_passed": sum(r.ok for r in reports), "adapters": len(reports),
                                       "checks": {str(r.adapter): {n: s for n, s, _ in r.checks} for r in reports}})
    failed = [f"{r.adapter} ({r.failed_names()})" for r in reports if not r.ok]
    if failed:
        raise SurgvqaError(f"verification failed: {'; '.join(failed)}")


def _cmd_sanity(args, params) -> None:
    from surgvqa.train.sanity import sanity_overfit

    r = sanity_overfit(params, Path(args.splits), Path(args.raw or params.data.raw_dir), Path(args.base))
    print(f"sanity-overfit: loss {r['first_loss']:.3f} -> {r['final_loss']:.3f} in {r['steps']} steps "
          f"(threshold {r['threshold']}): {'PASSED' if r['passed'] else 'FAILED'}")
    if not r["passed"]:
        raise SurgvqaError("the model could not overfit a few dozen examples: check the label masks and the "
                           "learning rate (sanity.learning_rate)")


def _cmd_evaluate(args, params) -> None:
    from surgvqa.evaluate.evaluate import run

    r = run(args.approach, Path(args.models), Path(args.splits), Path(args.raw or params.data.raw_dir),
            Path(args.stage_table), Path(args.out) / args.approach, params)
    for mode, s in r["modes"].items():
        lo, hi = s["overall"]["strict_ci"]
        print(f"{args.approach} ({mode}): strict {s['overall']['strict']:.3f} [{lo:.3f}, {hi:.3f}], lenient "
              f"{s['overall']['lenient']:.3f}, majority answer {s['overall']['majority']:.3f} on {s['overall']['n']} items")


def _cmd_compare(args, params) -> None:
    from surgvqa.evaluate.compare import run

    r = run(Path(args.eval), Path(args.out), Path(args.metrics), Path(args.charts), params)
    print(f"compare ({r['mode']} mode), strict: " + ", ".join(
        f"{a} {s['overall']['strict']:.3f}" for a, s in r["approaches"].items()) + f"; table in {args.out}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="surgvqa", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make, import or fetch the raw Kvasir-VQA layout").add_subparsers(
        dest="data_command", required=True)
    s = data.add_parser("sample", help="generate the grounded synthetic sample (the embedded default)")
    s.add_argument("--images", type=int, help="number of images (default: data.sample.images)")
    s.add_argument("--seed", type=int, help="seed (default: data.sample.seed)")
    s.add_argument("--out", help="output folder (default: data.raw_dir)")
    s.set_defaults(func=_cmd_sample)
    s = data.add_parser("import", help="convert a local copy of Kvasir-VQA (HF parquet, or CSV + images)")
    s.add_argument("--from", dest="source", required=True, help="parquet file or folder, or metadata CSV")
    s.add_argument("--images", help="image folder for a CSV input (default: images/ beside the CSV)")
    s.add_argument("--to", help="output folder (default: data.raw_dir)")
    s.set_defaults(func=_cmd_import)
    s = data.add_parser("ensure", help="make sure the raw data exists: pull it from a DVC remote or generate the sample")
    s.set_defaults(func=_cmd_ensure)

    def stage(name: str, help_: str, func, **paths: str) -> None:
        s = sub.add_parser(name, help=help_)
        for flag, default in paths.items():
            s.add_argument(f"--{flag}", default=default or None, help=f"default: {default or 'from params'}")
        s.set_defaults(func=func)

    stage("ingest", "check rows and images, write the QA table and quarantine", _cmd_ingest,
          raw="", out="data/ingested", report="reports/ingest.json")
    stage("categorize", "assign each question a clinical stage; write the inline format", _cmd_categorize,
          qa="data/ingested/qa.jsonl", out="data/categorized", report="reports/categorize.json")
    stage("convert", "inline format to CXRTrek format (one QA pair per row)", _cmd_convert,
          inline="data/categorized/inline.jsonl", out="data/cxrtrek", report="reports/convert.json")
    stage("split", "image-level train/val/test split", _cmd_split,
          cxrtrek="data/cxrtrek/cxrtrek.jsonl", out="data/split", report="reports/split.json")
    stage("validate", "Great Expectations suite over the splits", _cmd_validate,
          splits="data/split", raw="", report="reports/data_validation.json")
    stage("base", "build (tiny) or resolve (Hub id, path) the base model and record its lineage", _cmd_base,
          train="data/split/train.jsonl", raw="", out="models/base", report="reports/base.json")
    t = sub.add_parser("train", help="train one stage of one approach's adapter (LoRA or QLoRA)")
    t.add_argument("--approach", required=True, choices=["sequential", "curriculum", "baseline"])
    t.add_argument("--stage", type=int, help="1, 2 or 3 (sequential and curriculum)")
    for flag, default in (("splits", "data/split"), ("raw", ""), ("base", "models/base"), ("models", "models"),
                          ("checkpoints", "models/.checkpoints")):
        t.add_argument(f"--{flag}", default=default or None, help=f"default: {default or 'from params'}")
    t.set_defaults(func=_cmd_train)
    v = sub.add_parser("verify-adapter", help="check an adapter: loads, LoRA-sized, frozen base, lineage, parent")
    v.add_argument("adapter", nargs="+", help="adapter directories (each with lineage.json)")
    v.add_argument("--report", help="also write the results as JSON here")
    v.set_defaults(func=_cmd_verify)
    stage("sanity-overfit", "train a fresh adapter on a few dozen examples; fails unless the loss collapses",
          _cmd_sanity, splits="data/split", raw="", base="models/base")
    e = sub.add_parser("evaluate", help="answer the test split with one approach's adapters; score it strictly")
    e.add_argument("--approach", required=True, choices=["sequential", "curriculum", "baseline"])
    for flag, default in (("models", "models"), ("splits", "data/split"), ("raw", ""),
                          ("stage-table", "data/categorized/question_stages.csv"), ("out", "reports/eval")):
        e.add_argument(f"--{flag}", default=default or None, help=f"default: {default or 'from params'}")
    e.set_defaults(func=_cmd_evaluate)
    stage("compare", "the approaches side by side: table, paired tests, charts", _cmd_compare,
          eval="reports/eval", out="reports/compare.md", metrics="reports/compare.json", charts="reports/charts")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from surgvqa.params import load_params

        args.func(args, load_params(args.params))
    except SurgvqaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
