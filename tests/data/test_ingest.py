import csv
import json

import pytest

from surgvqa.data.ingest import ingest_raw, run
from surgvqa.errors import SurgvqaError
from tests.conftest import jpeg_bytes, section, write_raw

Q1, Q2 = "Is there text?", "What type of procedure is the image taken from?"


def quarantine_of(path):
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def ingested(raw, out, **changes):
    """Run the stage's work on raw into out: (qa.jsonl rows, quarantine rows, report)."""
    report = ingest_raw(raw, out, section("ingest", **changes))
    rows = [json.loads(line) for line in (out / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    return rows, quarantine_of(out / "quarantine.csv"), report


def test_clean_rows_pass_through_with_image_paths(tmp_path):
    raw = write_raw(tmp_path / "raw", [("Normal", Q1, "yes", "img1"), ("Normal", Q2, "colonoscopy", "img1")],
                    {"img1": jpeg_bytes(1)})
    rows, quarantine, report = ingested(raw, tmp_path / "out", max_bad_fraction=0.0)
    assert (tmp_path / "out" / "qa.jsonl").read_text(encoding="utf-8") == (
        '{"img_id": "img1", "image": "images/img1.jpg", "source": "Normal", "question": "Is there text?", '
        '"answer": "yes"}\n'
        '{"img_id": "img1", "image": "images/img1.jpg", "source": "Normal", "question": '
        '"What type of procedure is the image taken from?", "answer": "colonoscopy"}\n')
    assert quarantine == []
    assert report["images_ok"] == 1 and report["unique_questions"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["qa.jsonl", "quarantine.csv"]  # no scratch left


def test_every_bad_row_is_quarantined_with_its_reason_and_nothing_is_lost(tmp_path):
    good = jpeg_bytes(2)
    rows = [
        ("Polyps", Q1, "yes", "ok"),
        ("Polyps", Q1, "no", "nofile"),              # image file missing
        ("Polyps", Q1, "no", "truncated"),           # JPEG cut in half
        ("Polyps", Q1, "no", "garbage"),             # not an image at all
        ("Polyps", Q1, "no", "../escape"),           # would step out of images/
        ("Polyps", Q2, "", "ok"),                    # empty answer
        ("Polyps", "What type of polyp is present?", "nan", "ok"),   # missing answer as public copies write it
        ("Polyps", Q1, "yes", "ok"),                 # the same row again
        ("Polyps", "Is this finding easy to detect?", "line one\nline two", "ok"),  # spans two lines
        ("Polyps", "", "yes", "ok"),                 # no question
    ]
    raw = write_raw(tmp_path / "raw", rows, {"ok": good, "truncated": good[: len(good) // 2], "garbage": b"not a jpeg"})
    # A row with too many fields and a non-UTF-8 row, written as raw bytes.
    with (raw / "metadata.csv").open("ab") as f:
        f.write(b"Polyps,Is there text?,yes,ok,extra\n")
        f.write(b"Polyps,How many polyps are in the image?,\xff\xfe1,ok\n")
    kept, quarantine, report = ingested(raw, tmp_path / "out", max_bad_fraction=1.0)
    assert [(q["line"], q["reason"]) for q in quarantine] == [
        ("3", "missing_image"), ("4", "undecodable_image"), ("5", "undecodable_image"), ("6", "unsafe_img_id"),
        ("7", "missing_answer"), ("8", "missing_answer"), ("9", "duplicate_row"), ("10", "multiline_record"),
        ("12", "missing_question"), ("13", "wrong_field_count"), ("14", "non_utf8")]
    assert quarantine[6]["detail"] == "line 2 gives the same answer for this image"
    assert quarantine[-1]["answer"] == "\\xff\\xfe1"  # the bad bytes are shown, not lost
    assert kept == [{"img_id": "ok", "image": "images/ok.jpg", "source": "Polyps", "question": Q1, "answer": "yes"}]
    # Counted in physical lines: the two-line record counts twice.
    assert report["rows_total"] == len(kept) + report["rows_quarantined"] == 13
    assert report["quarantined_by_reason"]["undecodable_image"] == 2
    assert report["quarantined_by_reason"]["multiline_record"] == 2
    assert not (tmp_path / "escape.jpg").exists()
    # No stand-in image was written for the broken ones.
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["garbage.jpg", "ok.jpg", "truncated.jpg"]


def test_stage_fails_above_the_bad_share_but_still_writes_quarantine_and_report(tmp_path):
    raw = write_raw(tmp_path / "raw", [("Normal", Q1, "yes", "a"), ("Normal", Q1, "yes", "missing")],
                    {"a": jpeg_bytes(3)})
    with pytest.raises(SurgvqaError, match=r"1 of 2 rows are bad .*max_bad_fraction"):
        run(raw, tmp_path / "out", tmp_path / "report.json", section("ingest", max_bad_fraction=0.25))
    assert [q["reason"] for q in quarantine_of(tmp_path / "out" / "quarantine.csv")] == ["missing_image"]
    assert json.loads((tmp_path / "report.json").read_text())["bad_fraction"] == 0.5
    # Within the limit the same data passes and the clean row is written.
    r = run(raw, tmp_path / "out2", tmp_path / "report2.json", section("ingest", max_bad_fraction=0.5))
    assert r["rows_ok"] == 1
    assert len((tmp_path / "out2" / "qa.jsonl").read_text().splitlines()) == 1


def test_unknown_column_layout_is_a_clear_error(tmp_path):
    raw = write_raw(tmp_path / "raw", [("x", "y", "z")], {}, header=("image", "q", "a"))
    with pytest.raises(SurgvqaError, match="unknown column layout.*source,question,answer,img_id"):
        ingest_raw(raw, tmp_path / "out", section("ingest"))


def test_missing_raw_data_says_how_to_make_it(tmp_path):
    with pytest.raises(SurgvqaError, match="surgvqa data sample"):
        ingest_raw(tmp_path / "nothing", tmp_path / "out", section("ingest"))


def test_columns_are_matched_by_name_in_any_order_and_extra_columns_are_named(tmp_path):
    # Matching by name is safe: a header names every value, so a reordered export cannot shift answers into
    # questions; a column that is missing or repeated is an error instead (see test_ingest_corpus.py).
    raw = write_raw(tmp_path / "raw", [("img1", "yes", "0", Q1, "Normal")], {"img1": jpeg_bytes(4)},
                    header=("img_id", "answer", "", "question", "source"))  # "" is a pandas index column
    (row,), _, report = ingested(raw, tmp_path / "out")
    assert row == {"img_id": "img1", "image": "images/img1.jpg", "source": "Normal", "question": Q1, "answer": "yes"}
    assert report["ignored_columns"] == [""]


def test_a_stray_quote_cannot_swallow_the_rows_after_it(tmp_path):
    rows = [("Normal", 'Is there text?', "yes", "a")] + [("Normal", f"Q{k}?", "no", "a") for k in range(20)]
    raw = write_raw(tmp_path / "raw", rows, {"a": jpeg_bytes(6)})
    text = (raw / "metadata.csv").read_text().replace("Normal,Is there text?", 'Normal,"Is there text?', 1)
    (raw / "metadata.csv").write_text(text)
    _, (q,), report = ingested(raw, tmp_path / "out", max_bad_fraction=1.0)
    # The quote is never closed: the parser reaches the end of the file inside it.
    assert (q["reason"], q["lines"], q["line"]) == ("malformed_csv", "21", "2")
    assert q["detail"] == "lines 2-22: unexpected end of data"
    assert report["rows_total"] == 21 and report["rows_quarantined"] == 21
    with pytest.raises(SurgvqaError, match="21 of 21 rows are bad"):
        run(raw, tmp_path / "out", tmp_path / "r.json", section("ingest", max_bad_fraction=0.5))


def test_limit_compares_counts_not_a_rounded_share(tmp_path):
    rows = [("Normal", f"Q{k}?", "no", "a") for k in range(3)] + [("Normal", "Q?", "", "a")]
    raw = write_raw(tmp_path / "raw", rows, {"a": jpeg_bytes(7)})
    with pytest.raises(SurgvqaError):
        run(raw, tmp_path / "out", tmp_path / "r.json", section("ingest", max_bad_fraction=0.2499))
    report = run(raw, tmp_path / "out", tmp_path / "r.json", section("ingest", max_bad_fraction=0.25))
    assert report["rows_quarantined"] == 1
