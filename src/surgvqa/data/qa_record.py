"""The checks of one QA record that every stage after ingest applies to what it reads.

Ingest quarantines a raw row whose img_id is not a plain file name, whose question is blank, whose answer is
missing or that holds a control character; categorize, convert and split check the records they read for
the same things, under the same reason names, plus what their own format adds (the image path must be
`images/<img_id>.jpg`). A record that ingest would have refused never gets through a later stage because a file
was edited by hand or made by another tool: it is refused there, naming the file and line (`path:line`, counted
as an editor counts them, blank lines included) and the reason, instead of surfacing at `validate` or
mid-training. This module is a leaf (no Pillow, no transformers), so the light stages stay light.

One convention for a check's verdict across the data package (raw.py, image_check.py, importer.py and the stages):
a `Problem`, `NO_PROBLEM` = ('', '') when there is none, else (reason, detail); test it with `if reason:`.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surgvqa.errors import SurgvqaError
from surgvqa.io import image_relpath, is_safe_img_id, write_json

# Public copies of Kvasir-VQA write missing answers as "nan" (a pandas NaN turned into text); compared
# lower-cased after stripping white space, as ingest does.
MISSING_ANSWERS = {"", "nan"}
MAX_LISTED = 5  # a refusal's error names at most this many records
MAX_REPORTED = 1000  # and its report lists at most this many

Problem = tuple[str, str]  # (reason, detail); NO_PROBLEM when there is none
NO_PROBLEM: Problem = ("", "")
Numbered = list[tuple[int, dict]]  # (line number in the file, record), as `io.numbered_jsonl` yields them


def text(value: Any) -> str:
    """A value as text: '' for a missing one (None, or the float NaN pandas and parquet write for it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def value_problem(img_id: str, question: str, answer: str, source: str = "") -> Problem:
    """Ingest's checks of one row's values: ('', '') when a QA pair may go on, else (reason, detail)."""
    if not is_safe_img_id(img_id):
        return "unsafe_img_id", f"img_id {img_id[:80]!r} is not a plain file name; no path was built from it"
    if not question.strip():
        return "missing_question", ""
    if answer.strip().lower() in MISSING_ANSWERS:
        return "missing_answer", f"answer is {answer!r}"
    fields = {"source": source, "question": question, "answer": answer}
    bad = [k for k, v in fields.items() if any(unicodedata.category(c) in ("Cc", "Cf") for c in v)]
    if bad:  # NUL, tab, a newline, a BOM or a zero-width character: never part of a Kvasir-VQA value
        return "control_character", f"a control or format character in {', '.join(bad)}"
    return NO_PROBLEM


def missing_fields(record: dict, fields: tuple[str, ...]) -> Problem:
    """('missing_field', which) when one of `fields` is absent or not a string."""
    missing = [k for k in fields if not isinstance(record.get(k), str)]
    return ("missing_field", ", ".join(missing)) if missing else NO_PROBLEM


def image_problem(record: dict) -> Problem:
    """The record's image must be `images/<img_id>.jpg` for a plain img_id: nothing else is ever opened."""
    img_id = record["img_id"]
    if not is_safe_img_id(img_id):
        return "unsafe_img_id", f"img_id {img_id[:80]!r} is not a plain file name; no path was built from it"
    if record["image"] != image_relpath(img_id):
        return "bad_image_path", f"image {record['image'][:80]!r} is not {image_relpath(img_id)!r}"
    return NO_PROBLEM


def qa_problem(record: dict, fields: tuple[str, ...] = ("img_id", "image", "question", "answer")) -> Problem:
    """A QA row as the stages write them (qa.jsonl, cxrtrek.jsonl): its fields, image path and values."""
    problem = missing_fields(record, fields)
    if not problem[0]:
        problem = image_problem(record)
    if not problem[0]:
        problem = value_problem(record["img_id"], record["question"], record["answer"], text(record.get("source")))
    return problem


def refuse_bad_records(path: Path, records: Numbered, problem: Callable[[dict], Problem], stage: str,
                       report_path: Path) -> None:
    """When `problem` objects to any record: write a report counting them by reason and listing them with their
    line in the file, then raise naming the first few as `path:line`."""
    found = [(line, rec, *problem(rec)) for line, rec in records]
    bad = [{"line": line, "img_id": rec.get("img_id"), "reason": reason, "detail": detail}
           for line, rec, reason, detail in found if reason]
    if not bad:
        return
    by_reason = dict(sorted(Counter(b["reason"] for b in bad).items()))
    write_json(report_path, {"input": str(path), "records_total": len(records), "records_refused": len(bad),
                             "refused_by_reason": by_reason, "refused": bad[:MAX_REPORTED]})
    named = "; ".join(f"{path}:{b['line']} (img_id {str(b['img_id'])[:40]!r}): {b['reason']}"
                      + (f" ({b['detail']})" if b["detail"] else "") for b in bad[:MAX_LISTED])
    raise SurgvqaError(
        f"{stage}: {len(bad)} of {len(records)} records in {path} cannot be used {by_reason}: {named}"
        f"{'; ...' if len(bad) > MAX_LISTED else ''} (all in {report_path}). The stage before writes only records "
        "that pass these checks: rerun it (`dvc repro`) rather than editing the file.")
