"""Stage `convert`: the per-image inline format to the CXRTrek format, one QA pair per row with its stage.

A record that cannot be paired safely is rejected whole (written to rejected.jsonl with its line in
inline.jsonl and its reason, counted in the report), never half-converted, and the stage fails when the rejected
share is above `convert.max_bad_fraction`. Rejected: a missing field; an image path other than `images/<img_id>.jpg`;
instruction and target line counts that differ; an instruction line that is not `Stage-N: question` with N
in 1-3 (`Stage-0:`, `Stage-4:`, no marker); and a pair that ingest would have quarantined (a blank question, a
missing answer, a control character: qa_record.py, the same checks and reason names as ingest).
"""

from __future__ import annotations

import re
from pathlib import Path

from surgvqa import entry
from surgvqa.data.qa_record import NO_PROBLEM, Numbered, Problem, image_problem, missing_fields, text, value_problem
from surgvqa.errors import SurgvqaError
from surgvqa.io import numbered_jsonl, write_json, write_jsonl
from surgvqa.names import STAGE_IDS, STAGE_NAMES
from surgvqa.params.convert import ConvertParams

_STAGE_LINE = re.compile(r"Stage-([0-9]+): (.+)")  # ASCII digits: int() would read other scripts' too
INLINE_FIELDS = ("image", "img_id", "instruction", "target")
MAX_NAMED = 5  # the error names at most this many rejected records


def _pairs_problem(record: dict) -> Problem:
    questions, answers = record["instruction"].split("\n"), record["target"].split("\n")
    if len(questions) != len(answers):
        return "line_count_mismatch", f"{len(questions)} instruction lines, {len(answers)} target lines"
    for i, (line, answer) in enumerate(zip(questions, answers), 1):
        m = _STAGE_LINE.fullmatch(line)
        if not m:
            return "bad_stage_line", f"instruction line {i} is not 'Stage-N: question': {line[:80]!r}"
        if int(m.group(1)) not in STAGE_IDS:
            return "stage_out_of_range", f"instruction line {i}: stage {m.group(1)} is not one of {list(STAGE_IDS)}"
        reason, detail = value_problem(record["img_id"], m.group(2), answer, text(record.get("source")))
        if reason:
            return reason, f"pair {i}: {detail}" if detail else f"pair {i}"
    return NO_PROBLEM


def record_problem(record: dict) -> str:
    """'' when an inline record converts cleanly, else 'reason: detail' saying why it cannot."""
    reason, detail = missing_fields(record, INLINE_FIELDS)
    if not reason:
        reason, detail = image_problem(record)
    if not reason:
        reason, detail = _pairs_problem(record)
    return f"{reason}: {detail}" if reason else ""


def to_cxrtrek(record: dict) -> list[dict]:
    """The QA rows of one clean inline record."""
    rows = []
    for line, answer in zip(record["instruction"].split("\n"), record["target"].split("\n")):
        stage_text, question = _STAGE_LINE.fullmatch(line).groups()
        stage = int(stage_text)
        rows.append({"image": record["image"], "img_id": record["img_id"], "question": question, "answer": answer,
                     "stage_id": stage, "stage_name": STAGE_NAMES[stage]})
    return rows


def convert_records(records: Numbered) -> tuple[list[dict], list[dict], dict]:
    """(CXRTrek rows, rejected records with their line in the file and reason, report) of (line, record) pairs."""
    rows, rejected = [], []
    for line, rec in records:
        problem = record_problem(rec)
        if problem:
            rejected.append({"line": line, **rec, "reason": problem})
        else:
            rows.extend(to_cxrtrek(rec))
    reasons: dict[str, int] = {}
    for r in rejected:
        key = r["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    report = {
        "records_total": len(records),
        "records_rejected": len(rejected),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "rejected_fraction": round(len(rejected) / len(records), 6) if records else 0.0,
        "qa_rows": len(rows),
        "rows_per_stage": {f"stage_{s}": sum(1 for r in rows if r["stage_id"] == s) for s in STAGE_IDS},
    }
    return rows, rejected, report


def run(inline_path: Path, out_dir: Path, report_path: Path, convert: ConvertParams) -> dict:
    """The stage: convert inline.jsonl to cxrtrek.jsonl (+ rejected.jsonl) and enforce the rejection limit."""
    max_bad_fraction = convert.max_bad_fraction
    rows, rejected, report = convert_records(list(numbered_jsonl(Path(inline_path))))
    report["max_bad_fraction"] = max_bad_fraction
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "cxrtrek.jsonl", rows)
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    write_json(Path(report_path), report)
    if report["records_total"] == 0:
        raise SurgvqaError(f"{inline_path} holds no records: check the ingest and categorize reports")
    if report["rejected_fraction"] > max_bad_fraction:
        named = "; ".join(f"{inline_path}:{r['line']} (img_id {str(r.get('img_id'))[:40]!r}): {r['reason']}"
                          for r in rejected[:MAX_NAMED])
        raise SurgvqaError(
            f"convert: {report['records_rejected']} of {report['records_total']} inline records in {inline_path} "
            f"are malformed ({report['rejected_by_reason']}), above convert.max_bad_fraction {max_bad_fraction}: "
            f"{named}{'; ...' if len(rejected) > MAX_NAMED else ''}. All of them are in {out_dir / 'rejected.jsonl'}.")
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.data.convert` (dvc.yaml) and `surgvqa convert`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--inline", type=Path, default=Path("data/categorized/inline.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("data/cxrtrek"))
    parser.add_argument("--report", type=Path, default=Path("reports/convert.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, inline_path=args.inline, out_dir=args.out, report_path=args.report)


def _summary(r: dict) -> None:
    print(f"convert: {r['qa_rows']} QA rows from {r['records_total']} records; rejected {r['records_rejected']}")


if __name__ == "__main__":
    raise SystemExit(main())
