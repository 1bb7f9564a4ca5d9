import pytest

from surgvqa.data.convert import convert_records, record_problem, run
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_jsonl
from tests.conftest import section


def _rec(instruction, target, img="a"):
    return {"image": f"images/{img}.jpg", "img_id": img, "source": "Polyps", "instruction": instruction,
            "target": target}


def test_one_row_per_qa_pair_with_stage_names():
    rows, rejected, report = convert_records([_rec("Stage-1: Is there text?\nStage-3: Have all polyps been removed?",
                                           "yes\nno")])
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
    ("Stage-1: Is there text?\nStage-2: How many polyps are in the image?", "yes\n ", "empty_answer"),
])
def test_malformed_records_are_rejected_whole_with_reason(instruction, target, reason):
    assert record_problem(_rec(instruction, target)).startswith(reason)
    rows, rejected, report = convert_records([_rec(instruction, target), _rec("Stage-2: Q?", "A", img="b")])
    assert [r["img_id"] for r in rows] == ["b"]  # the bad record contributes no half-paired rows
    assert rejected[0]["reason"].startswith(reason) and rejected[0]["img_id"] == "a"
    assert report["rejected_by_reason"] == {reason: 1}


def test_run_fails_above_the_share_and_keeps_the_rejects(tmp_path):
    write_jsonl(tmp_path / "inline.jsonl", [_rec("Stage-1: Q?", "A\nB"), _rec("Stage-2: Q?", "A", img="b")])
    with pytest.raises(SurgvqaError, match="1 of 2 inline records are malformed"):
        run(tmp_path / "inline.jsonl", tmp_path / "out", tmp_path / "r.json", section("convert", max_bad_fraction=0.0))
    assert len(read_jsonl(tmp_path / "out" / "rejected.jsonl")) == 1
    report = run(tmp_path / "inline.jsonl", tmp_path / "out", tmp_path / "r.json",
                 section("convert", max_bad_fraction=0.5))
    assert report["qa_rows"] == 1 and len(read_jsonl(tmp_path / "out" / "cxrtrek.jsonl")) == 1


def test_record_without_its_fields_is_rejected_not_a_crash():
    rows, rejected, _ = convert_records([{"instruction": "Stage-1: Q?", "target": "A"}])
    assert rows == [] and rejected[0]["reason"] == "missing_field: image, img_id"
