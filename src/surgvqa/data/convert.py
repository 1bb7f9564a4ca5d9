"""Stage `convert`: the per-image inline format to the CXRTrek format, one QA pair per row with its stage.

A record whose instruction and target line counts differ, or whose instruction lines are not `Stage-N: ...`
with N in 1-3, cannot be paired safely: it is rejected whole (written with its reason, counted), never
half-converted, and the stage fails when the rejected share is above `convert.max_bad_fraction`.
"""

from __future__ import annotations

import re
from pathlib import Path

from surgvqa import entry
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_json, write_jsonl
from surgvqa.names import STAGE_IDS, STAGE_NAMES
from surgvqa.params.convert import ConvertParams

_STAGE_LINE = re.compile(r"Stage-(\d+): (.+)")


def record_problem(record: dict) -> str:
    """'' when an inline record converts cleanly, else the reason it cannot."""
    missing = [k for k in ("image", "img_id", "instruction", "target") if not isinstance(record.get(k), str)]
    if missing:
        return f"missing_field: {', '.join(missing)}"
    questions = record.get("instruction", "").split("\n")
    answers = record.get("target", "").split("\n")
    if len(questions) != len(answers):
        return f"line_count_mismatch: {len(questions)} instruction lines, {len(answers)} target lines"
    if any(not a.strip() for a in answers):
        return "empty_answer: a target line is blank"
    for line in questions:
        m = _STAGE_LINE.fullmatch(line)
        if not m:
            return f"bad_stage_line: {line[:80]!r}"
        if int(m.group(1)) not in STAGE_IDS:
            return f"stage_out_of_range: {line[:80]!r}"
    return ""


def to_cxrtrek(record: dict) -> list[dict]:
    """The QA rows of one clean inline record."""
    rows = []
    for line, answer in zip(record["instruction"].split("\n"), record["target"].split("\n")):
        stage_text, question = _STAGE_LINE.fullmatch(line).groups()
        stage = int(stage_text)
        rows.append({"image": record["image"], "img_id": record["img_id"], "question": question, "answer": answer,
                     "stage_id": stage, "stage_name": STAGE_NAMES[stage]})
    return rows


def convert_records(records: list[dict]) -> tuple[list[dict], list[dict], dict]:
    """(CXRTrek rows, rejected records with their reason, report)."""
    rows, rejected = [], []
    for rec in records:
        problem = record_problem(rec)
        if problem:
            rejected.append({**rec, "reason": problem})
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
    rows, rejected, report = convert_records(read_jsonl(Path(inline_path)))
    report["max_bad_fraction"] = max_bad_fraction
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "cxrtrek.jsonl", rows)
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    write_json(Path(report_path), report)
    if report["records_total"] == 0:
        raise SurgvqaError(f"{inline_path} holds no records: check the ingest and categorize reports")
    if report["rejected_fraction"] > max_bad_fraction:
        raise SurgvqaError(
            f"convert: {report['records_rejected']} of {report['records_total']} inline records are malformed "
            f"({report['rejected_by_reason']}), above convert.max_bad_fraction {max_bad_fraction}. "
            f"See {out_dir / 'rejected.jsonl'}.")
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
