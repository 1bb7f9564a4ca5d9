import json

import pytest

from surgvqa.data.convert import convert_records, record_problem, run
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_jsonl
from tests.conftest import section
from tests.data.file_access import file_access, strays


def _numbered(records):
    """(line, record) pairs as `io.numbered_jsonl` yields them for a file without blank lines."""
    return list(enumerate(records, 1))


def _rec(instruction, target, img="a"):
    return {"image": f"images/{img}.jpg", "img_id": img, "source": "Polyps", "instruction": instruction,
            "target": target}


def test_one_row_per_qa_pair_with_stage_names():
    rows, rejected, report = convert_records(_numbered([_rec(
        "Stage-1: Is there text?\nStage-3: Have all polyps been removed?", "yes\nno")]))
    assert rejected == []
    assert rows == [
        {"image": "images/a.jpg", "img_id": "a", "question": "Is there text?", "answer": "yes", "stage_id": 1,
         "stage_name": "Stage-1: Initial Assessment"},
        {"image": "images/a.jpg", "img_id": "a", "question": "Have all polyps been removed?", "answer": "no",
         "stage_id": 3, "stage_name": "Stage-3: Clinical Context"},
    ]
    assert report["rows_per_stage"] == {"stage_1": 1, "stage_2": 0, "stage_3": 1}


@pytest.mark.parametrize("instruction, target, reason", [
    ("Stage-1: Is there text?\nStage-2: How many polyps are in the image?", "yes", "line_count_mismatch"),
    ("Stage-1: Is there text?", "yes\nno", "line_count_mismatch"),
    ("Is there text?", "yes", "bad_stage_line"),
    ("Stage-one: Is there text?", "yes", "bad_stage_line"),
    ("Stage-4: Is there text?", "yes", "stage_out_of_range"),
    ("Stage-0: Is there text?", "yes", "stage_out_of_range"),
    ("Stage-\u0661: Is there text?", "yes", "bad_stage_line"),  # an Arabic-Indic one: int() would read it as 1
    ("Stage-1: Is there text?\nStage-2: How many polyps are in the image?", "yes\n ", "missing_answer"),
    ("Stage-1: Is there text?", "nan", "missing_answer"),
    ("Stage-1:  ", "yes", "missing_question"),
    ("Stage-1: Is there\x00 text?", "yes", "control_character"),
    ("Stage-1: Is there text?", "yes\r", "control_character"),
    ("Stage-1: Is there text?", "y\u200bes", "control_character"),
])
def test_malformed_records_are_rejected_whole_with_reason(instruction, target, reason):
    assert record_problem(_rec(instruction, target)).startswith(reason)
    rows, rejected, report = convert_records(_numbered([_rec(instruction, target), _rec("Stage-2: Q?", "A", img="b")]))
    assert [r["img_id"] for r in rows] == ["b"]  # the bad record contributes no half-paired rows
    assert rejected[0]["reason"].startswith(reason) and rejected[0]["img_id"] == "a"
    assert report["rejected_by_reason"] == {reason: 1}


def test_run_fails_above_the_share_and_keeps_the_rejects(tmp_path):
    write_jsonl(tmp_path / "inline.jsonl", [_rec("Stage-1: Q?", "A\nB"), _rec("Stage-2: Q?", "A", img="b")])
    with pytest.raises(SurgvqaError, match="1 of 2 inline records in .* are malformed"):
        run(tmp_path / "inline.jsonl", tmp_path / "out", tmp_path / "r.json", section("convert", max_bad_fraction=0.0))
    assert len(read_jsonl(tmp_path / "out" / "rejected.jsonl")) == 1
    report = run(tmp_path / "inline.jsonl", tmp_path / "out", tmp_path / "r.json",
                 section("convert", max_bad_fraction=0.5))
    assert report["qa_rows"] == 1 and len(read_jsonl(tmp_path / "out" / "cxrtrek.jsonl")) == 1


def test_record_without_its_fields_is_rejected_not_a_crash():
    rows, rejected, _ = convert_records(_numbered([{"instruction": "Stage-1: Q?", "target": "A"}]))
    assert rows == [] and rejected[0]["reason"] == "missing_field: image, img_id"


@pytest.mark.parametrize("change, reason", [
    ({"image": "/etc/hostname"}, "bad_image_path"),
    ({"image": "images/b.jpg"}, "bad_image_path"),
    ({"img_id": "../a", "image": "images/../a.jpg"}, "unsafe_img_id"),
    ({"img_id": "a\x00", "image": "images/a\x00.jpg"}, "unsafe_img_id"),
    ({"image": None}, "missing_field"),
])
def test_an_unsafe_or_unexpected_image_path_is_rejected(change, reason):
    assert record_problem({**_rec("Stage-1: Is there text?", "yes"), **change}).startswith(reason + ":")


def test_run_rejects_each_bad_record_by_line_and_keeps_every_good_one_byte_for_byte(tmp_path):
    good = [_rec("Stage-1: Is there text?\nStage-2: How many polyps are in the image?", "yes\n2", img="g1"),
            _rec("Stage-3: Have all polyps been removed?", "no", img="g2")]
    bad = {2: (_rec("Stage-4: Is there text?", "yes", img="b1"), "stage_out_of_range"),
           3: (_rec("Stage-0: Is there text?", "yes", img="b2"), "stage_out_of_range"),
           4: (_rec("Is there text?", "yes", img="b3"), "bad_stage_line"),
           5: (_rec("Stage-1: Is there text?\nStage-2: Q?", "yes", img="b4"), "line_count_mismatch"),
           6: (_rec("Stage-1:  ", "yes", img="b5"), "missing_question"),
           7: ({**_rec("Stage-1: Is there text?", "yes", img="b6"), "image": "../../etc/passwd"}, "bad_image_path")}
    data = tmp_path / "data"
    write_jsonl(data / "inline.jsonl", [good[0], *(rec for rec, _ in bad.values()), good[1]])
    write_jsonl(data / "alone" / "inline.jsonl", good)
    half, every, none = (section("convert", max_bad_fraction=f) for f in (0.5, 1.0, 0.0))
    with file_access() as access:
        with pytest.raises(SurgvqaError) as e:
            run(data / "inline.jsonl", data / "out", data / "convert.json", half)
        report = run(data / "inline.jsonl", data / "out", data / "convert.json", every)
        run(data / "alone" / "inline.jsonl", data / "alone" / "out", data / "alone.json", none)
    assert f"6 of 8 inline records in {data / 'inline.jsonl'} are malformed" in str(e.value)
    assert (f"{data / 'inline.jsonl'}:2 (img_id 'b1'): stage_out_of_range: instruction line 1: stage 4 is not one "
            "of [1, 2, 3]") in str(e.value)
    assert (report["records_total"], report["records_rejected"], report["qa_rows"]) == (8, 6, 3)
    assert report["rejected_by_reason"] == {"bad_image_path": 1, "bad_stage_line": 1, "line_count_mismatch": 1,
                                            "missing_question": 1, "stage_out_of_range": 2}
    assert json.loads((data / "convert.json").read_text()) == report
    rejected = read_jsonl(data / "out" / "rejected.jsonl")
    assert [(r["line"], r["img_id"], r["reason"].split(":")[0]) for r in rejected] == [
        (n, rec["img_id"], reason) for n, (rec, reason) in bad.items()]
    assert all({k: r[k] for k in bad[r["line"]][0]} == bad[r["line"]][0] for r in rejected), "kept whole"
    # The good records convert exactly as they would alone.
    assert (data / "out" / "cxrtrek.jsonl").read_bytes() == (data / "alone" / "out" / "cxrtrek.jsonl").read_bytes()
    assert access and strays(access, data) == []


def test_a_rejected_record_is_named_by_its_line_counting_blank_lines(tmp_path):
    # A hand-edited file: a blank line before the bad record. The record is the 2nd, but it is on line 3.
    path = tmp_path / "inline.jsonl"
    path.write_text(json.dumps(_rec("Stage-1: Q?", "A")) + "\n\n" + json.dumps(_rec("Stage-4: Q?", "A", img="b"))
                    + "\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f"{path}:3 \\(img_id 'b'\\): stage_out_of_range"):
        run(path, tmp_path / "out", tmp_path / "r.json", section("convert", max_bad_fraction=0.0))
    assert [r["line"] for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")] == [3]


def test_a_json_line_that_is_not_an_object_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "inline.jsonl"
    path.write_text(json.dumps(_rec("Stage-1: Q?", "A")) + "\n" + '["Stage-1: Q?", "A"]\n', encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f"^{path}:2: expected a JSON object, got list$"):
        run(path, tmp_path / "out", tmp_path / "r.json", section("convert"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("question, answer", [
    ("", "yes"), ("   ", "yes"), ("Is there text?", ""), ("Is there text?", "nan"), ("Is there text?", " NaN "),
    ("Is there\x00 text?", "yes"), ("Is there text?", "y\u200bes"), ("Is there\ttext?", "yes"),
])
def test_the_later_stages_refuse_a_pair_for_the_reason_ingest_quarantines_it(tmp_path, question, answer):
    """qa_record.value_problem is what categorize, convert and split check; ingest must agree on every case."""
    from surgvqa.data.ingest import ingest_raw
    from surgvqa.data.qa_record import value_problem
    from tests.conftest import jpeg_bytes, write_raw

    raw = write_raw(tmp_path / "raw", [("Polyps", question, answer, "a")], {"a": jpeg_bytes(0)})
    report = ingest_raw(raw, tmp_path / "ingested", section("ingest"))
    (reason,) = report["quarantined_by_reason"]
    assert value_problem("a", question, answer, "Polyps")[0] == reason
