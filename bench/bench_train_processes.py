"""Benchmark: one training stage as 1 process and as N processes (torchrun, data-parallel), side by side in one run.

Both run the stage's own command (`python -m surgvqa.train.train`, and the same under `torchrun --nproc_per_node
N`, as `launch.command` starts it) on the same base, rows and steps, each into its own scratch folder and MLflow
store. Training rows/s is the Trainer's count of rows of every process over the training loop's time, as the run
logs it (`train_rows_per_second`); the stage's wall time (loading included) is printed beside it. The machine's
cores are shared out: one process gets them all, N processes get cores/N threads each (OMP_NUM_THREADS).

    . .venv/bin/activate && python bench/bench_train_processes.py        # after `dvc repro` (needs models/base)
    python bench/bench_train_processes.py --approach baseline --max-steps 30 --processes 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from surgvqa.names import APPROACHES


def train_once(processes: int, args, params: dict, scratch: Path) -> dict:
    """Run the stage with `processes` processes; its MLflow run's throughput and the wall time."""
    from mlflow.tracking import MlflowClient

    folder = scratch / f"processes_{processes}"
    folder.mkdir()
    store = f"sqlite:///{folder / 'mlflow.db'}"
    params = {**params, "tracking": {**params["tracking"], "uri": store}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = ["-m", "surgvqa.train.train", "--params", str(folder / "params.yaml"), "--approach", args.approach,
             *(["--stage", str(args.stage)] if args.approach != "baseline" else []), "--splits", args.splits,
             "--raw", args.raw, "--base", args.base, "--models", str(folder / "models"),
             "--checkpoints", str(folder / "checkpoints")]
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SURGVQA_TRACKING_URI": store}
    start = time.perf_counter()
    done = subprocess.run([*launcher, *stage], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name(params["tracking"]["experiment"]).experiment_id])
    metrics = run.data.metrics
    return {"processes": processes, "threads": threads, "rows_per_second": metrics["train_rows_per_second"],
            "train_seconds": metrics["train_runtime"], "wall_seconds": wall,
            "final_train_loss": metrics["final_train_loss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--approach", default="baseline", choices=APPROACHES)
    ap.add_argument("--stage", type=int, default=1, help="sequential and curriculum: the clinical stage")
    ap.add_argument("--max-steps", type=int, default=30, help="optimizer steps of each run (train.max_steps)")
    ap.add_argument("--processes", type=int, default=2, help="the multi-process run's process count")
    ap.add_argument("--splits", default="data/split")
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--base", default="models/base")
    args = ap.parse_args()
    if args.processes < 2 or args.max_steps < 1:
        ap.error("--processes must be at least 2 and --max-steps at least 1")
    if not (Path(args.base) / "base.json").is_file():
        ap.error(f"{args.base} has no base.json: run `dvc repro base` first")

    params = yaml.safe_load(Path(args.params).read_text())
    params["train"]["max_steps"] = args.max_steps
    # The same number of steps, so N processes train on N times the rows: rows/s is the figure to compare.
    with tempfile.TemporaryDirectory(prefix="bench_train_") as scratch:
        results = [train_once(n, args, params, Path(scratch)) for n in (1, args.processes)]
    print(f"training {args.approach}, {args.max_steps} optimizer steps of train.batch_size "
          f"{params['train']['batch_size']} per process, on {os.cpu_count()} cores")
    print(f"{'processes':>9} {'threads':>7} {'rows/s':>8} {'train s':>8} {'wall s':>7} {'final loss':>10}")
    for r in results:
        print(f"{r['processes']:>9} {r['threads']:>7} {r['rows_per_second']:>8.2f} {r['train_seconds']:>8.2f} "
              f"{r['wall_seconds']:>7.1f} {r['final_train_loss']:>10.4f}")
    one, many = results
    print(f"ratio ({args.processes} processes / 1): {many['rows_per_second'] / one['rows_per_second']:.2f}x "
          "training rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
