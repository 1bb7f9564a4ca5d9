"""Stage `categorize`: give every question a clinical stage (1-3) and write the per-image inline format.

Two backends: `keyword` (deterministic rules, the embedded default) and `llm` (llm_categorizer.py). Both
decide per unique question; the stage of a row is the stage of its question. The report states each
backend's agreement with the hand-labelled gold stages (gold_stages.csv), so a backend change is measured.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from surgvqa import entry
from surgvqa.data import questions as Q
from surgvqa.data.qa_record import qa_problem, refuse_bad_records
from surgvqa.errors import SurgvqaError
from surgvqa.io import numbered_jsonl, write_json, write_jsonl
from surgvqa.names import STAGE_IDS
from surgvqa.params.categorize import CategorizeParams

# Keyword rules, first match wins. They follow the taxonomy's wording (quality control, procedure, artefacts
# and text; diagnosis, treatment, relationships), so they also place questions outside the 19.
# Patterns are regular expressions matched from a word start.
STAGE_KEYWORDS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (3, ("removed", "diagnos", "treatment", "recommend", "significan", "relationship", "follow-up")),
    (1, ("procedure", r"text\b", "artefact", "artifact", "quality", "blur", "easy to detect", "contain any finding")),
)
DEFAULT_STAGE = 2  # findings identification: abnormalities, instruments, landmarks, their attributes
QA_FIELDS = ("img_id", "image", "source", "question", "answer")  # what ingest writes to qa.jsonl


def keyword_stage(question: str) -> int:
    """The stage the keyword rules give a question."""
    text = question.lower()
    for stage, words in STAGE_KEYWORDS:
        if any(re.search(r"\b" + w, text) for w in words):
            return stage
    return DEFAULT_STAGE


def assign_stages(unique_questions: list[str], categorize: CategorizeParams) -> list[dict]:
    """One record per unique question: stage, whether the reply parsed, the raw reply (llm) and the gold stage."""
    if categorize.backend == "llm":
        from surgvqa.data.llm_categorizer import llm_stages

        replies = llm_stages(unique_questions, categorize.llm)
        decided = [(r.question, r.stage, r.parsed, r.raw_reply) for r in replies]
    else:
        decided = [(q, keyword_stage(q), True, "") for q in unique_questions]
    return [{"question": q, "stage": s, "parsed": parsed, "raw_reply": reply, "gold_stage": Q.gold_stage(q)}
            for q, s, parsed, reply in decided]


def check_unparsed(assignments: list[dict], categorize: CategorizeParams, where: str) -> None:
    """Fail when more replies than `categorize.llm.max_unparsed_fraction` named no stage (the keyword backend
    always parses); used by this stage and by routing of questions it never saw."""
    unparsed = [a["question"] for a in assignments if not a["parsed"]]
    limit = categorize.llm.max_unparsed_fraction
    if len(unparsed) > limit * len(assignments):
        raise SurgvqaError(
            f"categorize: {len(unparsed)} of {len(assignments)} LLM replies name no stage (above "
            f"categorize.llm.max_unparsed_fraction {limit:.0%}), e.g. {unparsed[0]!r}; {where}. Fix "
            "categorize.llm.prompt or the model, or use the keyword backend.")


def to_inline(rows: list[dict], stage_of: dict[str, int]) -> list[dict]:
    """Group QA rows per image into the inline format: `Stage-N: question` lines in stage order + answers."""
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["img_id"], []).append(r)
    records = []
    for img_id, qas in by_image.items():
        qas = sorted(qas, key=lambda r: stage_of[r["question"]])  # stable: keeps the data's order within a stage
        records.append({
            "image": qas[0]["image"],
            "img_id": img_id,
            "source": qas[0]["source"],
            "instruction": "\n".join(f"Stage-{stage_of[r['question']]}: {r['question']}" for r in qas),
            "target": "\n".join(r["answer"] for r in qas),
        })
    return records


def agreement_report(assignments: list[dict], rows: list[dict], backend: str) -> dict:
    """Counts, stage shares over rows, unparsed replies and agreement with the gold stages."""
    stage_of = {a["question"]: a["stage"] for a in assignments}
    rows_per_stage = {s: 0 for s in STAGE_IDS}
    for r in rows:
        rows_per_stage[stage_of[r["question"]]] += 1
    gold = [a for a in assignments if a["gold_stage"] is not None]
    agree = [a for a in gold if a["stage"] == a["gold_stage"]]
    return {
        "backend": backend,
        "unique_questions": len(assignments),
        "unparsed_replies": sum(1 for a in assignments if not a["parsed"]),
        "rows": len(rows),
        "rows_per_stage": {f"stage_{s}": n for s, n in rows_per_stage.items()},
        "row_share_per_stage": {f"stage_{s}": round(n / max(len(rows), 1), 4) for s, n in rows_per_stage.items()},
        "gold_questions": len(gold),
        "gold_agreement": round(len(agree) / len(gold), 4) if gold else None,
        "gold_disagreements": [{"question": a["question"], "stage": a["stage"], "gold_stage": a["gold_stage"]}
                               for a in gold if a["stage"] != a["gold_stage"]],
    }


def run(qa_path: Path, out_dir: Path, report_path: Path, categorize: CategorizeParams) -> dict:
    """The stage: categorize the ingested QA table, write inline.jsonl, question_stages.csv and the report;
    fail when more LLM replies than `categorize.llm.max_unparsed_fraction` name no stage. A record ingest would
    have quarantined (qa_record.py) is refused before any work: the report then counts and lists them."""
    numbered = list(numbered_jsonl(Path(qa_path)))
    refuse_bad_records(Path(qa_path), numbered, lambda r: qa_problem(r, QA_FIELDS), "categorize", Path(report_path))
    rows = [row for _, row in numbered]
    assignments = assign_stages(list(dict.fromkeys(r["question"] for r in rows)), categorize)
    stage_of = {a["question"]: a["stage"] for a in assignments}
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "inline.jsonl", to_inline(rows, stage_of))
    with (out_dir / "question_stages.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ("question", "stage", "gold_stage", "parsed", "raw_reply"), lineterminator="\n")
        writer.writeheader()
        writer.writerows(assignments)
    report = agreement_report(assignments, rows, categorize.backend)
    if categorize.backend == "llm":
        report["max_unparsed_fraction"] = categorize.llm.max_unparsed_fraction
    write_json(Path(report_path), report)
    check_unparsed(assignments, categorize, f"their raw replies are in {out_dir / 'question_stages.csv'}")
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.data.categorize` (dvc.yaml) and `surgvqa categorize`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--qa", type=Path, default=Path("data/ingested/qa.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("data/categorized"))
    parser.add_argument("--report", type=Path, default=Path("reports/categorize.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, qa_path=args.qa, out_dir=args.out, report_path=args.report)


def _summary(r: dict) -> None:
    print(f"categorize ({r['backend']}): {r['unique_questions']} questions, row shares {r['row_share_per_stage']}, "
          f"gold agreement {r['gold_agreement']}, unparsed {r['unparsed_replies']}")


if __name__ == "__main__":
    raise SystemExit(main())
