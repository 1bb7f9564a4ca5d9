import json

import pytest

from surgvqa.data.validate import run, validate_splits
from surgvqa.errors import SurgvqaError
from surgvqa.io import write_jsonl
from surgvqa.params.validate import StageShareBounds, ValidateParams
from tests.conftest import jpeg_bytes, section


def _row(img, question, stage, answer="yes"):
    return {"image": f"images/{img}.jpg", "img_id": img, "question": question, "answer": answer, "stage_id": stage,
            "stage_name": f"Stage-{stage}"}


def _image_rows(img):
    # Two stage-1 rows, two stage-2 rows, one stage-3 row: shares 0.4 / 0.4 / 0.2.
    return [_row(img, "q1a", 1), _row(img, "q1b", 1), _row(img, "q2a", 2), _row(img, "q2b", 2), _row(img, "q3", 3)]


@pytest.fixture
def raw_dir(tmp_path):
    (tmp_path / "images").mkdir()
    for img in ("a", "b", "c", "d"):
        (tmp_path / "images" / f"{img}.jpg").write_bytes(jpeg_bytes(0))
    return tmp_path


def _clean():
    return {"train": _image_rows("a") + _image_rows("b"), "val": _image_rows("c"), "test": _image_rows("d")}


def _failed(summary):
    return {r["column"]: r["offenders"] for r in summary["results"] if not r["success"]}


def test_clean_splits_pass(raw_dir):
    summary = validate_splits(_clean(), raw_dir, section("validate").stage_share)
    assert summary["success"] and summary["expectations_failed"] == 0
    assert summary["stage_share"]["val"] == {"stage_1": 0.4, "stage_2": 0.4, "stage_3": 0.2}
    assert summary["leaked_images"] == []


def test_leaked_image_is_caught_and_named(raw_dir):
    splits = _clean()
    splits["test"] += [_row("b", "q-extra", 2)]  # image b is also in train
    summary = validate_splits(splits, raw_dir, section("validate").stage_share)
    assert not summary["success"]
    assert summary["leaked_images"] == ["b"]
    assert _failed(summary) == {"img_id": ["b"]}


def test_skewed_stage_distribution_is_caught(raw_dir):
    splits = _clean()
    splits["val"] = [_row("c", f"q{k}", 1) for k in range(5)]  # val is all stage 1
    summary = validate_splits(splits, raw_dir, StageShareBounds(stage_1=[0.2, 0.6], stage_2=[0.3, 0.75],
                                                         stage_3=[0.02, 0.25]))
    failed = _failed(summary)
    assert failed["stage_1_share"] == ["val=1.000"]
    assert failed["stage_2_share"] == ["val=0.000"] and failed["stage_3_share"] == ["val=0.000"]


def test_bad_rows_are_caught_and_named(raw_dir):
    splits = _clean()
    splits["train"] += [_row("e", "q1", 1)]                    # image file e.jpg does not exist
    splits["val"] += [_row("c", "q1a", 1, answer="no")]         # (c, q1a) twice
    splits["test"] += [_row("d", "q9", 4), _row("d", "q8", 2, answer="  ")]  # stage 4; blank answer
    failed = _failed(validate_splits(splits, raw_dir, StageShareBounds(stage_1=[0, 1], stage_2=[0, 1], stage_3=[0, 1])))
    assert failed["image_present"] == ["images/e.jpg"]
    assert failed["stage_id"] == [4]
    assert failed["answer"] == ["  "]
    assert failed["img_id,question"] == [["c", "q1a"], ["c", "q1a"]]


def test_run_writes_report_and_fails_the_stage(tmp_path, raw_dir):
    splits = _clean()
    splits["val"] += [_row("a", "q-leak", 2)]
    for name, part in splits.items():
        write_jsonl(tmp_path / "split" / f"{name}.jsonl", part)
    with pytest.raises(SurgvqaError, match=r"expect_column_values_to_be_unique\(img_id\)"):
        run(tmp_path / "split", raw_dir, tmp_path / "report.json", section("validate"))
    assert '"leaked_images": [\n    "a"\n  ]' in (tmp_path / "report.json").read_text()


def test_bad_values_still_give_a_json_report_and_paths_from_data_are_not_followed(tmp_path, raw_dir):
    splits = _clean()
    splits["test"] += [_row("d", "q9", 4), {**_row("d", "q7", 2), "image": "/etc/hostname"},
                       {**_row("d", "q6", 2), "stage_id": None}]
    for name, part in splits.items():
        write_jsonl(tmp_path / "split" / f"{name}.jsonl", part)
    with pytest.raises(SurgvqaError, match="expectation"):
        run(tmp_path / "split", raw_dir, tmp_path / "report.json",
            ValidateParams(StageShareBounds(stage_1=[0, 1], stage_2=[0, 1], stage_3=[0, 1])))
    report = json.loads((tmp_path / "report.json").read_text())
    failed = {(r["expectation"], r["column"]): r for r in report["results"] if not r["success"]}
    assert failed[("expect_column_values_to_be_in_set", "image_path_ok")]["offenders"] == ["/etc/hostname"]
    assert failed[("expect_column_values_to_be_in_set", "stage_id")]["offenders"] == [4]
    assert failed[("expect_column_values_to_not_be_null", "stage_id")]["unexpected_count"] == 1


def test_a_json_line_that_is_not_an_object_is_named_by_file_and_line(tmp_path, raw_dir):
    for name, part in _clean().items():
        write_jsonl(tmp_path / "split" / f"{name}.jsonl", part)
    val = tmp_path / "split" / "val.jsonl"
    val.write_text(val.read_text(encoding="utf-8") + "null\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f"^{val}:6: expected a JSON object, got NoneType$"):
        run(tmp_path / "split", raw_dir, tmp_path / "report.json", section("validate"))
    assert not (tmp_path / "report.json").exists()
