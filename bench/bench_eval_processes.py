"""Benchmark: evaluation QA/s with one process and with several (torchrun), side by side, on the same items.

Both runs start this file's worker under torchrun (`--nproc_per_node 1`, then `--processes`), so both answer
through the same code path: each process loads base + adapters, answers a warm-up (one image per process,
untimed, on a throwaway image cache), then `--repeats` times waits for the others and answers the items with
`answer_items` (its share of the images when there are several) on a fresh image cache. The main process records
the fastest wall time of that answering, the gathered predictions included (the fastest: the machine may be
shared, and interference only ever slows a run); the driver prints both QA/s and their ratio, and checks that
the predictions are identical.

By default the cores are split evenly: each process gets cores // processes torch threads (OMP_NUM_THREADS),
so one process has them all and the comparison is of two ways of using the same machine; `--threads 1` gives
every process one thread, which separates the gain from processes from the cost of threads on tiny matrices
(on a machine other work shares, a two-thread process can run several times slower than a one-thread one).
Model loading is not timed.

    . .venv/bin/activate && python bench/bench_eval_processes.py          # after `dvc repro` (needs models/)
    python bench/bench_eval_processes.py --processes 2 --items 200 --approach sequential --mode context
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_engine import TRAINED_ITEMS, Bench, device_name, params_and_device

from surgvqa.names import APPROACHES, DECODINGS, EVAL_MODES


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--processes", type=int, default=2, help="the several processes set beside one (default: 2)")
    ap.add_argument("--approach", default="sequential", choices=APPROACHES)
    ap.add_argument("--mode", default="context", choices=EVAL_MODES)
    ap.add_argument("--decoding", choices=DECODINGS, help="default: evaluate.decoding")
    ap.add_argument("--batch-size", type=int, help="default: evaluate.batch_size")
    ap.add_argument("--items", type=int, default=TRAINED_ITEMS,
                    help=f"test items (whole images, in file order); default: {TRAINED_ITEMS}")
    ap.add_argument("--threads", type=int, help="torch threads per process (default: cores // processes)")
    ap.add_argument("--repeats", type=int, default=3, help="timed answering runs; the fastest counts (default: 3)")
    ap.add_argument("--models", default="models")
    ap.add_argument("--splits", default="data/split")
    ap.add_argument("--stage-table", default="data/categorized/question_stages.csv")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # set by the driver: where the main process writes
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    if args.items < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1) or args.processes < 2:
        ap.error("--items, --repeats and --threads must be at least 1, --processes at least 2")
    if args.worker is not None:
        return worker(args)
    if not (Path(args.models) / "base").is_dir():
        print(f"{args.models}/base not found: run `dvc repro` first", file=sys.stderr)
        return 2
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        one, several = (launch(args, n, cores, Path(tmp) / f"{n}.json") for n in (1, args.processes))
    items = len(one["predictions"])
    print(f"device {one['device']}, {cores} cores, {items} items, {args.approach}, {args.mode} mode, "
          f"{one['decoding']} decoding, batch {one['batch_size']}, fastest of {args.repeats} runs")
    for run in (one, several):
        print(f"{run['processes']} process(es) x {run['threads']} thread(s): {run['seconds']:7.1f} s answering  "
              f"{items / run['seconds']:7.2f} QA/s")
    print(f"ratio ({args.processes} processes / 1): {one['seconds'] / several['seconds']:.2f}x")
    same = sum(a == b for a, b in zip(one["predictions"], several["predictions"], strict=True))
    print(f"identical predictions: {same}/{items} ({same / items:.1%})")
    return 0 if same == items else 1


def launch(args, processes: int, cores: int, out: Path) -> dict:
    """Run the worker under torchrun with `processes` processes, each with its share of the cores as threads."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               __file__, *sys.argv[1:], "--worker", str(out)]
    threads = args.threads or max(1, cores // processes)
    print(f"{processes} process(es) x {threads} thread(s) ...", flush=True)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.read_text(encoding="utf-8"))


def worker(args) -> int:
    """One process of a run: load, warm up, answer its share, and (main process) write the time and predictions."""
    import torch

    from surgvqa import distributed
    from surgvqa.infer.engine import AdapterModels
    from surgvqa.infer.generate import load_adapters
    from surgvqa.model.load import base_record, load_base

    params, device = params_and_device(args)
    bench = Bench(args, params, device)
    model, processor = load_base(base_record(Path(args.models) / "base"), params.model)
    peft_model = load_adapters(model, bench.dirs)
    first_images = list(dict.fromkeys(it.img_id for it in bench.items))[: distributed.world_size()]
    bench.answer(bench.answerer(AdapterModels(peft_model), processor),
                 [it for it in bench.items if it.img_id in first_images], "warm-up")
    seconds = float("inf")
    for _ in range(args.repeats):
        answerer = bench.answerer(AdapterModels(peft_model), processor)  # a fresh image cache for each timed run
        distributed.wait_for_everyone()
        start = time.perf_counter()
        predictions = bench.answer(answerer, bench.items, "answering")
        seconds = min(seconds, time.perf_counter() - start)
    if distributed.is_main():
        args.worker.write_text(json.dumps({
            "processes": distributed.world_size(), "threads": torch.get_num_threads(), "seconds": seconds,
            "device": device_name(device), "decoding": params.evaluate.decoding,
            "batch_size": params.evaluate.batch_size, "predictions": predictions}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
