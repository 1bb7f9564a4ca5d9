"""Benchmark: the evaluation engine against the straightforward reference, on the same adapters and items.

The reference loads one base model per stage adapter and answers one question at a time (as the prototype
did); the engine keeps one base with the adapters switched by name and answers in batches. Both use the same
decoding rule, so their predictions must be identical. Wall time includes loading the models.

    . .venv/bin/activate && python bench/bench_engine.py            # after `dvc repro` (needs models/)
    python bench/bench_engine.py --items 200 --approach sequential --mode context --decoding constrained
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from surgvqa.names import APPROACHES, DECODINGS, EVAL_MODES


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--approach", default="sequential", choices=APPROACHES)
    ap.add_argument("--mode", default="context", choices=EVAL_MODES)
    ap.add_argument("--decoding", choices=DECODINGS, help="default: evaluate.decoding")
    ap.add_argument("--batch-size", type=int, help="default: evaluate.batch_size")
    ap.add_argument("--items", type=int, default=1000, help="test items (whole images, in file order)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed warm-up of both sides on the first image")
    ap.add_argument("--models", default="models")
    ap.add_argument("--splits", default="data/split")
    ap.add_argument("--stage-table", default="data/categorized/question_stages.csv")
    args = ap.parse_args()
    if args.items < 1:
        ap.error("--items must be at least 1")

    import peft  # noqa: F401  imported before the clock starts, so neither side pays the import
    import torch
    import transformers.models.qwen2_vl.modeling_qwen2_vl  # noqa: F401

    from surgvqa.evaluate.evaluate import approach_adapters
    from surgvqa.data.raw import RAW_DIR
    from surgvqa.infer.constrained import build_tries
    from surgvqa.infer.engine import AdapterModels, Answerer, Item, answer_items
    from surgvqa.infer.generate import load_adapters
    from surgvqa.infer.reference import load_separate, reference_answers
    from surgvqa.infer.routing import read_stage_table, route
    from surgvqa.io import read_jsonl
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import answer_choices, candidate_sets
    from surgvqa.model.sft import image_of
    from surgvqa.params.schema import load_params

    params = load_params(args.params)
    if args.decoding:
        params.evaluate.decoding = args.decoding
    if args.batch_size:
        params.evaluate.batch_size = args.batch_size
    models_dir, raw_dir = Path(args.models), RAW_DIR
    if not (models_dir / "base").is_dir():
        print(f"{models_dir}/base not found: run `dvc repro` first", file=sys.stderr)
        return 2
    train_rows, test_rows = read_jsonl(Path(args.splits) / "train.jsonl"), read_jsonl(Path(args.splits) / "test.jsonl")
    rows = test_rows[: args.items]
    while len(rows) < len(test_rows) and rows[-1]["img_id"] == test_rows[len(rows)]["img_id"]:
        rows.append(test_rows[len(rows)])  # whole images, so context passing sees every earlier stage
    stage_of = route([r["question"] for r in rows], read_stage_table(Path(args.stage_table)), params.categorize)
    items = [Item(r["img_id"], image_of(raw_dir, r["img_id"]), r["question"], stage_of[r["question"]]) for r in rows]
    dirs, adapter_of_stage = approach_adapters(args.approach, models_dir)
    dirs = {n: dirs[n] for n in dict.fromkeys(adapter_of_stage.values())}  # only the adapters that answer
    choices = answer_choices(train_rows)

    print(f"torch threads {torch.get_num_threads()}, {len(items)} items, {args.approach}, {args.mode} mode, "
          f"{params.evaluate.decoding} decoding, batch {params.evaluate.batch_size}", flush=True)
    if args.warmup:
        # One-time process costs (thread pools, allocator, lazy initialisation) would otherwise land on
        # whichever side runs first; both sides answer the warm-up image, untimed, on throwaway models.
        warm = [it for it in items if it.img_id == items[0].img_id]
        model, processor = load_base(base_record(models_dir / "base"), params.model)
        answerer = Answerer(AdapterModels(load_adapters(model, dirs)), processor, choices,
                            build_tries(processor.tokenizer, choices), candidate_sets(train_rows))
        answer_items(answerer, warm, adapter_of_stage, args.mode, params.evaluate, params.prompt, desc="warm-up")
        reference_answers(load_separate(models_dir / "base", dirs, params.model), answerer, warm, adapter_of_stage,
                          args.mode, params.evaluate, params.prompt)
    t0 = time.perf_counter()
    base_model, processor = load_base(base_record(models_dir / "base"), params.model)
    answerer = Answerer(AdapterModels(load_adapters(base_model, dirs)), processor, choices,
                        build_tries(processor.tokenizer, choices),
                        candidate_sets(train_rows))
    t1 = time.perf_counter()
    engine = answer_items(answerer, items, adapter_of_stage, args.mode, params.evaluate, params.prompt, desc="engine")
    t2 = time.perf_counter()
    separate = load_separate(models_dir / "base", dirs, params.model)
    t3 = time.perf_counter()
    reference = reference_answers(separate, answerer, items, adapter_of_stage, args.mode, params.evaluate, params.prompt)
    t4 = time.perf_counter()

    same = sum(a == b for a, b in zip(engine, reference))
    eng_qps, ref_qps = len(items) / (t2 - t0), len(items) / (t4 - t2)
    print(f"engine:    {t2 - t0:7.1f} s ({t1 - t0:.1f} s loading 1 base + {len(dirs)} adapters)  {eng_qps:7.2f} QA/s")
    print(f"reference: {t4 - t2:7.1f} s ({t3 - t2:.1f} s loading {len(dirs)} bases)             {ref_qps:7.2f} QA/s")
    print(f"speed-up:  {eng_qps / ref_qps:.1f}x   (answering only: {(t4 - t3) / (t2 - t1):.1f}x)")
    print(f"identical predictions: {same}/{len(items)} ({same / len(items):.1%})")
    for i, (a, b) in enumerate(zip(engine, reference)):
        if a != b:
            print(f"  differs: {items[i].question!r} engine {a!r} reference {b!r}")
    return 0 if same == len(items) else 1


if __name__ == "__main__":
    sys.exit(main())
