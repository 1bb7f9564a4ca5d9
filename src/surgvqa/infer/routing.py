"""Route questions to stages with the categorizer's own assignment, never a stage column of the evaluated file.

The categorize stage wrote question_stages.csv: the stage its backend gave each question, which is what
labelled the training rows. A question outside that table is categorized now by the same function.
"""

from __future__ import annotations

import csv
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.names import STAGE_IDS
from surgvqa.params.categorize import CategorizeParams


def read_stage_table(path: Path) -> dict[str, int]:
    """question -> stage from the categorize stage's question_stages.csv."""
    if not path.is_file():
        raise SurgvqaError(f"{path} does not exist: run `dvc repro categorize` first")
    with path.open(encoding="utf-8", newline="") as f:
        return {r["question"]: int(r["stage"]) for r in csv.DictReader(f)}


def route(questions: list[str], table: dict[str, int], categorize: CategorizeParams) -> dict[str, int]:
    """The stage of every question: from the table, else from the categorizer (the function training used)."""
    from surgvqa.data.categorize import assign_stages, check_unparsed

    unseen = [q for q in dict.fromkeys(questions) if q not in table]
    assigned = assign_stages(unseen, categorize) if unseen else []
    check_unparsed(assigned, categorize, "they are test questions missing from question_stages.csv")
    fresh = {a["question"]: a["stage"] for a in assigned}
    stages = {q: table.get(q, fresh.get(q)) for q in questions}
    odd = sorted({f"{q!r}: {s}" for q, s in stages.items() if s not in STAGE_IDS})
    if odd:
        raise SurgvqaError(f"questions routed outside stages {STAGE_IDS}: {'; '.join(odd[:3])}; fix "
                           "question_stages.csv or rerun `dvc repro categorize`")
    return stages
