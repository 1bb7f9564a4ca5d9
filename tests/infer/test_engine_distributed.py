"""The engine as two CPU processes (torchrun, gloo) on the tiny model: each answers its share of the images and
every one returns all predictions, in the items' order, equal to one process's, in every mode and decoding.

This file is also the worker torchrun starts (`python -m torch.distributed.run ... test_engine_distributed.py`):
it answers the tiny project's test split like the test does in its own process, and the main process writes
the predictions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

from surgvqa.params.schema import Params

APPROACH = "sequential"
DECODINGS = ("constrained", "score")


def answers(params: Params, models: Path, splits: Path, raw: Path, stage_table: Path) -> dict[str, list[str]]:
    """The sequential adapters' predictions for the test split, by "<decoding> <mode>", as the engine gives them."""
    from surgvqa.evaluate.evaluate import approach_adapters, load_test_items
    from surgvqa.infer.engine import AdapterModels, answer_items, make_answerer
    from surgvqa.infer.generate import load_adapters
    from surgvqa.infer.routing import read_stage_table
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import answer_choices, candidate_sets

    train_rows, items, _ = load_test_items(splits, raw, read_stage_table(stage_table), params.categorize)
    dirs, adapter_of_stage = approach_adapters(APPROACH, models)
    model, processor = load_base(base_record(models / "base"), params.model)
    answerer = make_answerer(AdapterModels(load_adapters(model, dirs)), processor, answer_choices(train_rows),
                             candidate_sets(train_rows))
    out = {}
    for decoding in DECODINGS:
        evaluate = dataclasses.replace(params.evaluate, decoding=decoding)
        for mode in ("context", "independent"):
            out[f"{decoding} {mode}"] = answer_items(answerer, items, adapter_of_stage, mode, evaluate, params.prompt,
                                                     desc=f"{decoding} {mode}")
    return out


def _worker(argv: list[str]) -> int:
    """torchrun's entry: answer as `answers` does and, in the main process, write them to --out as JSON."""
    from surgvqa import distributed
    from surgvqa.params.schema import load_params

    ap = argparse.ArgumentParser()
    for name in ("--params", "--models", "--splits", "--raw", "--stage-table", "--out"):
        ap.add_argument(name, type=Path, required=True)
    args = ap.parse_args(argv)
    result = answers(load_params(args.params), args.models, args.splits, args.raw, args.stage_table)
    if distributed.is_main():
        args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


def test_shares_that_overlap_or_miss_items_are_refused():
    from surgvqa.errors import SurgvqaError
    from surgvqa.infer.engine import _in_order

    assert _in_order([(2, "c"), (0, "a"), (1, "b")], 3) == ["a", "b", "c"]
    with pytest.raises(SurgvqaError, match="overlap or miss"):
        _in_order([(0, "a"), (1, "b"), (1, "b")], 3)  # item 1 answered twice, item 2 never
    with pytest.raises(SurgvqaError, match="overlap or miss"):
        _in_order([(0, "a")], 2)


@pytest.mark.slow
def test_two_processes_answer_as_one_in_every_mode_and_decoding(tiny_project, tiny_adapters, tmp_path):
    from tests.model_fixtures import write_params
    from tests.scratch import run
    from tests.servers import free_port

    project = tiny_project
    paths = {"models": tiny_adapters, "splits": project["splits"], "raw": project["raw"],
             "stage_table": project["root"] / "categorized" / "question_stages.csv"}
    args = [f"--{k.replace('_', '-')}={v}" for k, v in paths.items()]
    args += [f"--params={write_params(project['params'], tmp_path / 'params.yaml')}", f"--out={tmp_path / 'two.json'}"]
    done = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), __file__, *args], tmp_path, {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    two = json.loads((tmp_path / "two.json").read_text())
    one = answers(project["params"], **paths)
    assert list(two) == list(one) == [f"{d} {m}" for d in DECODINGS for m in ("context", "independent")]
    assert all(two[k] == one[k] for k in one) and len(one["constrained context"]) >= 20

    # The main process said how each call was shared: both processes took part, their shares adding up to all items.
    line = re.compile(r"(\w+ \w+): 2 processes answer (\d+) \+ (\d+) of (\d+) questions \((\d+) \+ (\d+) images\)")
    shares = {call: (int(first), int(second), int(total)) for call, first, second, total, _, _ in
              line.findall(done.stderr)}
    assert set(shares) == set(one), done.stderr
    assert all(first > 0 and second > 0 and first + second == total == len(one[call])
               for call, (first, second, total) in shares.items())

if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
