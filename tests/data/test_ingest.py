import csv
import json

import pytest

from surgvqa.data.ingest import ingest_rows, run
from surgvqa.errors import SurgvqaError
from tests.conftest import jpeg_bytes, section, write_raw

Q1, Q2 = "Is there text?", "What type of procedure is the image taken from?"


def _quarantine(path):
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_clean_rows_pass_through_with_image_paths(tmp_path):
    raw = write_raw(tmp_path / "raw", [("Normal", Q1, "yes", "img1"), ("Normal", Q2, "colonoscopy", "img1")],
                    {"img1": jpeg_bytes(1)})
    result = ingest_rows(raw, max_bad_fraction=0.0)
    assert result.rows == [
        {"img_id": "img1", "image": "images/img1.jpg", "source": "Normal", "question": Q1, "answer": "yes"},
        {"img_id": "img1", "image": "images/img1.jpg", "source": "Normal", "question": Q2, "answer": "colonoscopy"},
    ]
    assert result.quarantine == []
    assert result.report["images_ok"] == 1 and result.report["unique_questions"] == 2


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
        ("Polyps", Q1, "no", "ok"),                  # the same question again for the same image
        ("Polyps", "Is this finding easy to detect?", "line one\nline two", "ok"),  # spans two lines
        ("Polyps", "", "yes", "ok"),                 # no question
    ]
    raw = write_raw(tmp_path / "raw", rows, {"ok": good, "truncated": good[: len(good) // 2], "garbage": b"not a jpeg"})
    # A row with too many fields and a non-UTF-8 row, written as raw bytes.
    with (raw / "metadata.csv").open("ab") as f:
        f.write(b"Polyps,Is there text?,yes,ok,extra\n")
        f.write(b"Polyps,How many polyps are in the image?,\xff\xfe1,ok\n")
    result = ingest_rows(raw, max_bad_fraction=1.0)
    reasons = sorted(q["reason"] for q in result.quarantine)
    assert reasons == sorted(["missing_image", "undecodable_image", "undecodable_image", "unsafe_img_id",
                              "missing_answer", "missing_answer", "duplicate_question", "multiline_record",
                              "missing_question", "wrong_field_count", "non_utf8"])
    assert len(result.rows) == 1 and result.rows[0]["img_id"] == "ok"
    # Counted in physical lines: the two-line record counts twice.
    assert result.report["rows_total"] == len(result.rows) + result.report["rows_quarantined"] == 13
    assert result.report["quarantined_by_reason"]["undecodable_image"] == 2
    assert not (tmp_path / "escape.jpg").exists()
    # No stand-in image was written for the broken ones.
    assert sorted(p.name for p in (raw / "images").iterdir()) == ["garbage.jpg", "ok.jpg", "truncated.jpg"]


def test_stage_fails_above_the_bad_share_but_still_writes_quarantine_and_report(tmp_path):
    raw = write_raw(tmp_path / "raw", [("Normal", Q1, "yes", "a"), ("Normal", Q1, "yes", "missing")],
                    {"a": jpeg_bytes(3)})
    with pytest.raises(SurgvqaError, match=r"1 of 2 rows are bad .*max_bad_fraction"):
        run(raw, tmp_path / "out", tmp_path / "report.json", section("ingest", max_bad_fraction=0.25))
    assert [q["reason"] for q in _quarantine(tmp_path / "out" / "quarantine.csv")] == ["missing_image"]
    assert json.loads((tmp_path / "report.json").read_text())["bad_fraction"] == 0.5
    # Within the limit the same data passes and the clean row is written.
    r = run(raw, tmp_path / "out2", tmp_path / "report2.json", section("ingest", max_bad_fraction=0.5))
    assert r["rows_ok"] == 1
    assert len((tmp_path / "out2" / "qa.jsonl").read_text().splitlines()) == 1


def test_unknown_column_layout_is_a_clear_error(tmp_path):
    raw = write_raw(tmp_path / "raw", [("x", "y", "z")], {}, header=("image", "q", "a"))
    with pytest.raises(SurgvqaError, match="unknown column layout.*source,question,answer,img_id"):
        ingest_rows(raw, 0.0)


def test_missing_raw_data_says_how_to_make_it(tmp_path):
    with pytest.raises(SurgvqaError, match="surgvqa data sample"):
        ingest_rows(tmp_path / "nothing", 0.0)


def test_column_order_does_not_matter(tmp_path):
    raw = write_raw(tmp_path / "raw", [("img1", "yes", Q1, "Normal")], {"img1": jpeg_bytes(4)},
                    header=("img_id", "answer", "question", "source"))
    (row,) = ingest_rows(raw, 0.0).rows
    assert (row["img_id"], row["answer"], row["question"], row["source"]) == ("img1", "yes", Q1, "Normal")


def test_a_stray_quote_cannot_swallow_the_rows_after_it(tmp_path):
    rows = [("Normal", 'Is there text?', "yes", "a")] + [("Normal", f"Q{k}?", "no", "a") for k in range(20)]
    raw = write_raw(tmp_path / "raw", rows, {"a": jpeg_bytes(6)})
    text = (raw / "metadata.csv").read_text().replace("Normal,Is there text?", 'Normal,"Is there text?', 1)
    (raw / "metadata.csv").write_text(text)
    result = ingest_rows(raw, max_bad_fraction=1.0)
    (q,) = result.quarantine
    assert q["reason"] == "multiline_record" and q["lines"] == 21
    assert result.report["rows_total"] == 21 and result.report["rows_quarantined"] == 21
    with pytest.raises(SurgvqaError, match="21 of 21 rows are bad"):
        run(raw, tmp_path / "out", tmp_path / "r.json", section("ingest", max_bad_fraction=0.5))


def test_limit_compares_counts_not_a_rounded_share(tmp_path):
    rows = [("Normal", f"Q{k}?", "no", "a") for k in range(3)] + [("Normal", "Q?", "", "a")]
    raw = write_raw(tmp_path / "raw", rows, {"a": jpeg_bytes(7)})
    with pytest.raises(SurgvqaError):
        run(raw, tmp_path / "out", tmp_path / "r.json", section("ingest", max_bad_fraction=0.2499))
    report = run(raw, tmp_path / "out", tmp_path / "r.json", section("ingest", max_bad_fraction=0.25))
    assert report["rows_quarantined"] == 1
