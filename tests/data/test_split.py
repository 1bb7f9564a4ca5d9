import json
import random

import pytest

from surgvqa.data.split import assign_images, run, split_rows
from surgvqa.errors import SurgvqaError
from surgvqa.io import write_jsonl
from surgvqa.names import STAGE_NAMES
from tests.conftest import section
from tests.data.file_access import file_access, strays


def _rows(n_images, per_image=3):
    return [{"img_id": f"img{i:03d}", "question": f"q{k}", "stage_id": 1 + k % 3}
            for i in range(n_images) for k in range(per_image)]


def test_no_image_in_two_splits_and_ratios_hold():
    parts = split_rows(_rows(200), section("split"))
    images = {name: {r["img_id"] for r in part} for name, part in parts.items()}
    assert not (images["train"] & images["val"]) and not (images["train"] & images["test"])
    assert not (images["val"] & images["test"])
    assert [len(images[s]) for s in ("train", "val", "test")] == [140, 30, 30]
    assert sum(len(p) for p in parts.values()) == 600  # every row lands somewhere


def test_deterministic_and_independent_of_row_order():
    rows = _rows(50)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert assign_images([r["img_id"] for r in rows], section("split", seed=7)) == \
        assign_images([r["img_id"] for r in shuffled], section("split", seed=7))
    assert assign_images([r["img_id"] for r in rows], section("split", seed=7)) != \
        assign_images([r["img_id"] for r in rows], section("split", seed=8))


@pytest.mark.parametrize("n", [3, 4, 5])
def test_tiny_data_keeps_every_split_non_empty(n):
    where = assign_images([f"i{k}" for k in range(n)], section("split"))
    assert set(where.values()) == {"train", "val", "test"}


@pytest.mark.parametrize("n", [10, 20, 30, 47, 101])
def test_val_and_test_get_equal_shares_to_within_one_image(n):
    where = list(assign_images([f"i{k}" for k in range(n)], section("split")).values())
    train, val, test = (where.count(s) for s in ("train", "val", "test"))
    assert train == round(0.7 * n) and abs(val - test) <= 1 and train + val + test == n


def _cx(img, question="Is there text?", stage=1, **change):
    return {"image": f"images/{img}.jpg", "img_id": img, "question": question, "answer": "no", "stage_id": stage,
            "stage_name": STAGE_NAMES.get(stage, "Stage-?"), **change}


@pytest.mark.parametrize("record, reason", [
    (_cx("d", stage=4), "stage_out_of_range"),
    (_cx("d", stage_id=True), "stage_out_of_range"),
    (_cx("d", stage_name="Stage-3: Clinical Context"), "bad_stage_name"),
    (_cx("d", question=""), "missing_question"),
    (_cx("d", answer=" "), "missing_answer"),
    (_cx("d", answer="no\x1b[31m"), "control_character"),
    (_cx("d", image="/etc/hostname"), "bad_image_path"),
    (_cx("d", img_id="/etc/passwd", image="images//etc/passwd.jpg"), "unsafe_img_id"),
])
def test_a_row_convert_would_not_write_is_refused_naming_file_line_and_reason(tmp_path, record, reason):
    data = tmp_path / "data"
    write_jsonl(data / "cxrtrek.jsonl", [_cx("a"), _cx("b", stage=2), _cx("c", stage=3), record])
    params = section("split")
    with file_access() as access, pytest.raises(SurgvqaError) as e:
        run(data / "cxrtrek.jsonl", data / "split", data / "split.json", params)
    assert str(e.value).startswith(f"split: 1 of 4 records in {data / 'cxrtrek.jsonl'} cannot be used "
                                   f"{{'{reason}': 1}}: {data / 'cxrtrek.jsonl'}:4 (img_id ")
    assert not (data / "split").exists(), "no split is written from bad input"
    report = json.loads((data / "split.json").read_text())
    assert (report["records_total"], report["records_refused"], report["refused_by_reason"]) == (4, 1, {reason: 1})
    assert report["refused"] == [{"line": 4, "img_id": record["img_id"], "reason": reason,
                                  "detail": report["refused"][0]["detail"]}]
    assert access and strays(access, data) == []


def test_a_refused_row_is_named_by_its_line_counting_blank_lines(tmp_path):
    path = tmp_path / "cxrtrek.jsonl"  # hand-edited: blank lines before the bad row, the 2nd row on line 4
    path.write_text(json.dumps(_cx("a")) + "\n\n  \n" + json.dumps(_cx("b", stage=4)) + "\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f": {path}:4 \\(img_id 'b'\\): stage_out_of_range"):
        run(path, tmp_path / "split", tmp_path / "r.json", section("split"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["records_total"], [r["line"] for r in report["refused"]]) == (2, [4])


def test_a_json_line_that_is_not_an_object_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "cxrtrek.jsonl"
    path.write_text(json.dumps(_cx("a")) + "\n" + '"just a string"\n', encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f"^{path}:2: expected a JSON object, got str$"):
        run(path, tmp_path / "split", tmp_path / "r.json", section("split"))
    assert not (tmp_path / "split").exists()


def test_clean_rows_still_split(tmp_path):
    rows = [_cx(f"i{k}", stage=1 + k % 3) for k in range(10)]
    write_jsonl(tmp_path / "cxrtrek.jsonl", rows)
    report = run(tmp_path / "cxrtrek.jsonl", tmp_path / "split", tmp_path / "r.json", section("split"))
    assert sum(part["rows"] for part in report.values()) == 10
