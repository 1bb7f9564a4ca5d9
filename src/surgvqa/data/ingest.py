"""Stage `ingest`: read the raw layout, check every row and image, write the QA table and a quarantine.

A bad row is never repaired or replaced (no stand-in image): it goes to the quarantine file with its reason,
the counts go to the report, and the stage fails when the bad share is above `ingest.max_bad_fraction`.
The metadata is streamed, one record at a time; what must be remembered across rows (the (image, question)
pairs seen, the images checked, the quarantine) lives in a scratch SQLite file beside the outputs, so memory
stays bounded however large the file is. Nothing outside the raw folder is read: see image_check.py.

An image belongs to exactly one source (its category: Polyps, Normal, ...) in Kvasir-VQA. When the rows of one
img_id that pass every other check name several sources, the metadata contradicts itself about what the picture
shows and nothing tells which source is right (the first one seen would only be the first in file order), so
every such row of that image is quarantined as `conflicting_source`, whatever its question and answer, and the
report counts the images (`images_with_conflicting_sources`). The same rule as for contradicting answers: keep
neither.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from surgvqa import entry
from surgvqa.data import raw
from surgvqa.data.image_check import ImageChecker
from surgvqa.data.qa_record import NO_PROBLEM, Problem, value_problem
from surgvqa.data.questions import LIST_SEPARATOR, Q_POLYP_SIZE, Q_POLYP_TYPE, QUESTIONS, SIZE_SEPARATOR
from surgvqa.errors import SurgvqaError
from surgvqa.io import atomic_open, image_relpath, write_json, write_jsonl
from surgvqa.params.ingest import IngestParams

QUARANTINE_COLUMNS = ("line", "lines", "reason", "detail", "source", "question", "answer", "img_id")
# Equivalent spellings, rewritten value by value (between `;`) before answers are compared or written; the
# report repeats this table. Kvasir-VQA writes polyp sizes with their unit, but some rows drop it (`>20`).
ANSWER_SPELLINGS = {Q_POLYP_SIZE: {"<5": "<5mm", "5-10": "5-10mm", "11-20": "11-20mm", ">20": ">20mm"}}
# Questions whose answer may list several values: the dataset's own "; " lists, and one row per polyp for the
# polyp's type and size. Disagreeing answers to any other question (yes/no, counts, procedure) contradict.
LIST_QUESTIONS = frozenset({q.text for q in QUESTIONS if q.qtype in ("multiple_choice", "colour", "location")}
                           | {Q_POLYP_TYPE, Q_POLYP_SIZE})
# A merged answer joins its values the way the dataset's own lists do ("; ", polyp sizes ";" without a space);
# evaluate/match.py splits on ";" either way and compares the values as a set, in any order.
SEPARATORS = {Q_POLYP_SIZE: SIZE_SEPARATOR}


def _values(answer: str) -> list[str]:
    return [v.strip() for v in answer.split(";") if v.strip()]


def normalise_answer(question: str, answer: str, counts: Counter) -> str:
    """The answer with ANSWER_SPELLINGS applied to each of its values (other bytes unchanged)."""
    table = ANSWER_SPELLINGS.get(question)
    if not table:
        return answer
    parts = answer.split(";")
    for i, part in enumerate(parts):
        if part.strip() in table:
            counts[f"{part.strip()} -> {table[part.strip()]}"] += 1
            parts[i] = part.replace(part.strip(), table[part.strip()])
    return ";".join(parts)


def _row_problem(record: raw.CsvRecord, n_header: int, v: dict[str, str]) -> Problem:
    reason, detail = record.problem(n_header)
    if reason:
        return reason, detail
    return value_problem(v["img_id"], v["question"], v["answer"], v["source"])  # one home: qa_record


class _Scratch:
    """What ingest remembers across rows, on disk: (image, question) pairs in first-seen order with their
    distinct answers, checked images, the sources each image's good rows name (with the first line naming
    each), and the quarantine (by line, so it is written in file order)."""

    SCHEMA = """
        CREATE TABLE pair(id INTEGER PRIMARY KEY, img_id TEXT, question TEXT, n INT, UNIQUE(img_id, question));
        CREATE TABLE answer(id INTEGER PRIMARY KEY, pair INT, line INT, source TEXT, answer TEXT, key TEXT,
                            written TEXT, UNIQUE(pair, source, key));
        CREATE TABLE image(img_id TEXT PRIMARY KEY, reason TEXT, detail TEXT);
        CREATE TABLE source(img_id TEXT, source TEXT, line INT, UNIQUE(img_id, source));
        CREATE TABLE quarantine(line INTEGER PRIMARY KEY, lines INT, reason TEXT, detail TEXT, source TEXT,
                                question TEXT, answer TEXT, img_id TEXT);"""

    def __init__(self, path: Path, counts: Counter) -> None:
        path.unlink(missing_ok=True)  # a leftover of a killed run
        self.counts = counts
        self.path, self.db = path, sqlite3.connect(path, isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN;" + self.SCHEMA)

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)

    def one(self, sql: str, *args):
        return self.db.execute(sql, args).fetchone()

    def quarantine(self, line: int, lines: int, reason: str, detail: str, v: dict[str, str]) -> None:
        self.counts[f"reason:{reason}"] += lines
        self.db.execute("INSERT INTO quarantine VALUES (?,?,?,?,?,?,?,?)",
                        (line, lines, reason, detail, *(raw.printable(v[c]) for c in raw.COLUMNS)))

    def sources(self, img_id: str) -> list[tuple[str, int]]:
        """The sources the good rows of img_id name, each with the first line naming it."""
        return self.db.execute("SELECT source, line FROM source WHERE img_id = ? ORDER BY line", (img_id,)).fetchall()

    def image(self, images: ImageChecker, img_id: str) -> Problem:
        known = self.one("SELECT reason, detail FROM image WHERE img_id = ?", img_id)
        if known is None:
            known = images.check(img_id)
            self.db.execute("INSERT INTO image VALUES (?,?,?)", (img_id, *known))
        return known

    def add(self, line: int, v: dict[str, str], written: str) -> int | None:
        """Remember a good row (`written`: its answer as in the file); returns the line of an earlier row saying
        the same, else None."""
        self.db.execute("INSERT OR IGNORE INTO source VALUES (?,?,?)", (v["img_id"], v["source"], line))
        pair = self.one("SELECT id FROM pair WHERE img_id = ? AND question = ?", v["img_id"], v["question"])
        if pair is None:
            pair = (self.db.execute("INSERT INTO pair VALUES (NULL,?,?,0)", (v["img_id"], v["question"])).lastrowid,)
        key = "\x1f".join(sorted(set(_values(v["answer"]))))  # the same values in another order say the same
        same = self.one("SELECT line FROM answer WHERE pair = ? AND source = ? AND key = ?", pair[0], v["source"], key)
        if same:
            return same[0]
        self.db.execute("INSERT INTO answer VALUES (NULL,?,?,?,?,?,?)",
                        (pair[0], line, v["source"], v["answer"], key, written))
        self.db.execute("UPDATE pair SET n = n + 1 WHERE id = ?", pair)
        return None


def _quarantine_answers(scratch: _Scratch, answers: list, reason: str, detail: str, img_id: str, question: str):
    for line, src, _, written in answers:  # the rows as the file wrote them
        scratch.quarantine(line, 1, reason, detail, {"source": src, "question": question, "answer": written,
                                                     "img_id": img_id})


def _rows(scratch: _Scratch, policy: str, counts: Counter) -> Iterator[dict]:
    """The QA rows in first-seen order; a pair with several distinct answers is merged or quarantined, and every
    row of an image filed under several sources is quarantined (see the module docstring)."""
    last_id, sources = None, []
    for pair, img_id, question, n in scratch.db.execute("SELECT id, img_id, question, n FROM pair ORDER BY id"):
        answers = scratch.db.execute("SELECT line, source, answer, written FROM answer WHERE pair = ? ORDER BY id",
                                     (pair,)).fetchall()
        if img_id != last_id:  # the pairs of one image are usually adjacent
            last_id, sources = img_id, scratch.sources(img_id)
        if len(sources) > 1:
            named = ", ".join(f"{src!r} (line {line})" for src, line in sources)
            _quarantine_answers(scratch, answers, "conflicting_source",
                                f"the image is filed under {len(sources)} sources: {named}; an image has one source "
                                "in Kvasir-VQA, so none of its rows is kept", img_id, question)
            continue
        source, answer = answers[0][1], answers[0][2]
        if n > 1:
            counts["pairs_with_conflicting_answers"] += 1
            values = sorted({x for a in answers for x in _values(a[2])})
            said = "; ".join(f"line {line}: {a!r}" for line, _, a, _ in answers)
            reason = ""
            if policy == "quarantine":
                reason, detail = "conflicting_answers", f"{said} (ingest.conflicting_answers: quarantine)"
            elif question not in LIST_QUESTIONS or ("none" in values and len(values) > 1):
                reason, detail = "conflicting_answers", f"{said}: contradict, cannot be merged into one answer"
            if reason:
                _quarantine_answers(scratch, answers, reason, detail, img_id, question)
                continue
            answer = SEPARATORS.get(question, LIST_SEPARATOR).join(values)
            counts["pairs_merged"] += 1
            counts["rows_merged_into_another"] += n - 1
        counts[f"question:{question}"] = 1
        yield {"img_id": img_id, "image": image_relpath(img_id), "source": source, "question": question,
               "answer": answer}


def _open_metadata(raw_dir: Path) -> BinaryIO:
    path = raw_dir / raw.METADATA
    try:  # O_NOFOLLOW: a metadata.csv that is a link to a file elsewhere is refused, not read
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SurgvqaError(f"{path} not found: make the raw data with `surgvqa data sample` (embedded default), "
                           "`surgvqa data import --from PATH` (real Kvasir-VQA) or `dvc pull data.dvc`") from None
    except OSError as e:
        raise SurgvqaError(f"{path} cannot be opened ({e.strerror}): it must be a plain file inside the data "
                           "folder, not a symbolic link") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SurgvqaError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def _read(raw_dir: Path, scratch: _Scratch, images: ImageChecker, counts: Counter) -> tuple[list[str], int]:
    """Check every record; bad ones go to the quarantine, good ones to the pairs. Returns (header, lines)."""
    total = 0
    with _open_metadata(raw_dir) as f, raw.parse_metadata(f, raw_dir / raw.METADATA) as (header, records):
        last_id, last_image = None, NO_PROBLEM  # rows of one image are usually adjacent
        for record in tqdm(records, desc="ingest", unit="row"):
            total += record.n_lines
            v = {c: x.strip() for c, x in record.values.items()}
            reason, detail = _row_problem(record, len(header), v)
            if not reason:
                if v["img_id"] != last_id:
                    last_id, last_image = v["img_id"], scratch.image(images, v["img_id"])
                reason, detail = last_image
            if not reason:
                written = v["answer"]
                earlier = scratch.add(record.line, {**v, "answer": normalise_answer(v["question"], written, counts)},
                                      written)
                if earlier is not None:
                    reason, detail = "duplicate_row", f"line {earlier} gives the same answer for this image"
            if reason:
                scratch.quarantine(record.line, record.n_lines, reason, detail, v)
    return header, total


def ingest_raw(raw_dir: Path, out_dir: Path, ingest: IngestParams) -> dict:
    """Check every row and image under raw_dir; write qa.jsonl and quarantine.csv to out_dir; return the report."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    scratch = _Scratch(out_dir / ".ingest-scratch.sqlite", counts)
    try:
        with ImageChecker(raw_dir / raw.IMAGES, ingest.max_image_pixels) as images:
            header, total = _read(raw_dir, scratch, images, counts)
            on_disk = images.count_jpg()
        if total == 0:
            raise SurgvqaError(f"{raw_dir / raw.METADATA} has a header but no rows")
        rows_ok = write_jsonl(out_dir / "qa.jsonl", _rows(scratch, ingest.conflicting_answers, counts))
        with atomic_open(out_dir / "quarantine.csv") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(QUARANTINE_COLUMNS)
            writer.writerows(scratch.db.execute("SELECT * FROM quarantine ORDER BY line"))
        images_ok, present, referenced = scratch.one(
            "SELECT SUM(reason = ''), SUM(reason != 'missing_image'), COUNT(*) FROM image")
        (conflicting_sources,) = scratch.one(
            "SELECT COUNT(*) FROM (SELECT img_id FROM source GROUP BY img_id HAVING COUNT(*) > 1)")
    finally:
        scratch.close()
    by_reason = {k.removeprefix("reason:"): n for k, n in counts.items() if k.startswith("reason:")}
    bad = sum(by_reason.values())
    return {
        "rows_total": total,  # physical lines, so a stray quote that swallowed twenty rows counts twenty
        "rows_ok": rows_ok,
        "rows_quarantined": bad,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "bad_fraction": round(bad / total, 6),
        "max_bad_fraction": ingest.max_bad_fraction,
        "ignored_columns": [c for c in header if c not in raw.COLUMNS],
        "images_referenced": referenced,
        "images_ok": images_ok or 0,
        "images_unreferenced": on_disk - (present or 0),
        "max_image_pixels": ingest.max_image_pixels,
        "unique_questions": sum(1 for k in counts if k.startswith("question:")),
        "images_with_conflicting_sources": conflicting_sources,
        "conflicting_answers": {
            "policy": ingest.conflicting_answers,
            "pairs": counts["pairs_with_conflicting_answers"],
            "pairs_merged": counts["pairs_merged"],
            "rows_merged_into_another": counts["rows_merged_into_another"],
            "mergeable_questions": sorted(LIST_QUESTIONS),
        },
        "answer_spellings": {"rule": ANSWER_SPELLINGS,
                             "rewritten": {k: n for k, n in sorted(counts.items()) if " -> " in k}},
    }


def run(raw_dir: Path, out_dir: Path, report_path: Path, ingest: IngestParams) -> dict:
    """The stage: ingest, write qa.jsonl + quarantine.csv + the report, then enforce the bad-row limit."""
    r = ingest_raw(raw_dir, out_dir, ingest)
    write_json(Path(report_path), r)
    if r["rows_quarantined"] > ingest.max_bad_fraction * r["rows_total"]:  # counts, not the rounded fraction
        raise SurgvqaError(
            f"ingest: {r['rows_quarantined']} of {r['rows_total']} rows are bad ({r['bad_fraction']:.1%} > "
            f"ingest.max_bad_fraction {ingest.max_bad_fraction:.1%}); reasons {r['quarantined_by_reason']}. "
            f"See {Path(out_dir) / 'quarantine.csv'}; fix the data or raise ingest.max_bad_fraction in params.yaml.")
    return r


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.data.ingest` (dvc.yaml) and `surgvqa ingest`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--raw", type=Path, default=raw.RAW_DIR, help=f"raw layout (default: {raw.RAW_DIR})")
    parser.add_argument("--out", type=Path, default=Path("data/ingested"))
    parser.add_argument("--report", type=Path, default=Path("reports/ingest.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, raw_dir=args.raw, out_dir=args.out, report_path=args.report)


def _summary(r: dict) -> None:
    c = r["conflicting_answers"]
    print(f"ingest: {r['rows_ok']} rows kept, {r['rows_quarantined']} quarantined {r['quarantined_by_reason']}, "
          f"{c['rows_merged_into_another']} merged into another row's answer; "
          f"{r['images_ok']}/{r['images_referenced']} images fit for the model")


if __name__ == "__main__":
    raise SystemExit(main())
