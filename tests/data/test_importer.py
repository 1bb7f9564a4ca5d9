"""`surgvqa data import` core: parquet and CSV inputs, skip reasons, report, refusal to overwrite."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from surgvqa.data.importer import import_dataset
from surgvqa.errors import SurgvqaError

HEADER = ["source", "question", "answer", "img_id"]
SKIPPED_HEADER = ["row", "reason", "detail", *HEADER]
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _image(fmt: str, colour: tuple[int, int, int] = (200, 30, 40), size: tuple[int, int] = (12, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


JPEG_A = _image("JPEG", (200, 30, 40))
JPEG_B = _image("JPEG", (20, 180, 40))
PNG = _image("PNG", (10, 20, 230), size=(9, 7))
GARBAGE = b"this is not an image at all"


def _write_parquet(path: Path, rows: list[tuple], struct: bool = True) -> Path:
    """rows: (source, question, answer, img_id, image bytes or None)."""
    images = [{"bytes": r[4], "path": None if r[4] is None else f"{r[3]}.jpg"} for r in rows] if struct \
        else [r[4] for r in rows]
    table = pa.table({
        "image": pa.array(images, type=IMAGE_STRUCT if struct else pa.binary()),
        **{c: pa.array([r[i] for r in rows], type=pa.string()) for i, c in enumerate(HEADER)},
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_parquet_struct_image_rows_and_images_written_once(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in" / "train.parquet", [
        ("colonoscopy", "  Are there any instrumnets in the image? ", "no", " imgA ", JPEG_A),
        ("colonoscopy", "What color is the abnormality?", "red", "imgA", JPEG_A),
        ("colonoscopy", "How many polyps are in the image?", "1", "imgA", JPEG_A),
        ("gastroscopy", "Is there text?", "yes", "imgB", JPEG_B),
    ])
    out = tmp_path / "raw"
    report = import_dataset(src, out)

    assert (out / "metadata.csv").read_bytes().decode("utf-8") == (
        "source,question,answer,img_id\n"
        "colonoscopy,Are there any instrumnets in the image?,no,imgA\n"
        "colonoscopy,What color is the abnormality?,red,imgA\n"
        "colonoscopy,How many polyps are in the image?,1,imgA\n"
        "gastroscopy,Is there text?,yes,imgB\n"
    )
    assert _files(out) == {"metadata.csv", "images/imgA.jpg", "images/imgB.jpg"}
    assert (out / "images" / "imgA.jpg").read_bytes() == JPEG_A
    assert (out / "images" / "imgB.jpg").read_bytes() == JPEG_B
    assert report == {
        "input_kind": "parquet", "input": str(src), "rows_read": 4, "rows_written": 4, "images_written": 2,
        "reencoded_images": 0, "rows_with_missing_answer": 0, "skipped_rows": 0,
        "skipped_by_reason": {"unsafe_img_id": 0, "missing_image": 0, "undecodable_image": 0,
                              "conflicting_image": 0, "multiline_record": 0, "wrong_field_count": 0,
                              "non_utf8": 0},
        "skipped_file": str(tmp_path / "import_skipped.csv"),
    }
    assert json.loads((tmp_path / "import_report.json").read_text(encoding="utf-8")) == report
    assert _read_csv(tmp_path / "import_skipped.csv") == [SKIPPED_HEADER]
    assert not any(p.name.startswith(".raw") for p in tmp_path.iterdir()), "staging folder left behind"


def test_directory_of_parquet_files_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    src = tmp_path / "kvasir"
    _write_parquet(src / "data" / "train-00001.parquet", [("gastroscopy", "q2", "a2", "imgB", JPEG_B)],
                   struct=False)
    _write_parquet(src / "data" / "train-00000.parquet", [("colonoscopy", "q1", "a1", "imgA", JPEG_A)])
    (src / "README.md").write_text("not data", encoding="utf-8")
    report = import_dataset(src, tmp_path / "raw")

    assert _read_csv(tmp_path / "raw" / "metadata.csv") == [
        HEADER, ["colonoscopy", "q1", "a1", "imgA"], ["gastroscopy", "q2", "a2", "imgB"]]
    assert (tmp_path / "raw" / "images" / "imgB.jpg").read_bytes() == JPEG_B
    assert (report["input_kind"], report["rows_read"], report["images_written"]) == ("parquet", 2, 2)


def test_png_is_reencoded_to_a_decodable_jpeg(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgP", PNG)])
    report = import_dataset(src, tmp_path / "raw")

    written = (tmp_path / "raw" / "images" / "imgP.jpg").read_bytes()
    assert written.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(written)) as im:
        im.load()
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (9, 7))
    assert (report["reencoded_images"], report["images_written"], report["rows_written"]) == (1, 1, 1)


def test_each_skip_reason_is_counted_and_listed(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [
        ("colonoscopy", "q1", "a1", "imgA", JPEG_A),
        ("colonoscopy", "q2", "a2", "../evil", JPEG_A),
        ("colonoscopy", "q3", "a3", "imgNull", None),
        ("colonoscopy", "q4", "a4", "imgEmpty", b""),
        ("colonoscopy", "q5", "a5", "imgBad", GARBAGE),
        ("colonoscopy", "q6", "a6", "imgA", JPEG_B),
        ("colonoscopy", "q7", "a7", "imgA", JPEG_A),
    ])
    out = tmp_path / "work" / "raw"
    report = import_dataset(src, out)

    assert report["skipped_by_reason"] == {"unsafe_img_id": 1, "missing_image": 2, "undecodable_image": 1,
                                           "conflicting_image": 1, "multiline_record": 0,
                                           "wrong_field_count": 0, "non_utf8": 0}
    assert (report["rows_read"], report["rows_written"], report["skipped_rows"]) == (7, 2, 5)
    assert report["images_written"] == 1
    assert _read_csv(out / "metadata.csv") == [HEADER, ["colonoscopy", "q1", "a1", "imgA"],
                                               ["colonoscopy", "q7", "a7", "imgA"]]
    assert (out / "images" / "imgA.jpg").read_bytes() == JPEG_A  # the first image, never the conflicting one
    assert _files(out) == {"metadata.csv", "images/imgA.jpg"}
    assert not list(tmp_path.rglob("evil*")), "an unsafe img_id must never become a file"

    skipped = _read_csv(tmp_path / "work" / "import_skipped.csv")
    assert skipped[0] == SKIPPED_HEADER
    assert [(r[0], r[1], *r[3:]) for r in skipped[1:]] == [
        ("2", "unsafe_img_id", "colonoscopy", "q2", "a2", "../evil"),
        ("3", "missing_image", "colonoscopy", "q3", "a3", "imgNull"),
        ("4", "missing_image", "colonoscopy", "q4", "a4", "imgEmpty"),
        ("5", "undecodable_image", "colonoscopy", "q5", "a5", "imgBad"),
        ("6", "conflicting_image", "colonoscopy", "q6", "a6", "imgA"),
    ]
    assert all(r[2] for r in skipped[1:]), "every skipped row says why"
    assert "row 1" in skipped[5][2]


def test_missing_answer_is_kept_as_empty_and_counted(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [
        ("colonoscopy", "q1", None, "imgA", JPEG_A),
        ("colonoscopy", "q2", "yes", "imgA", JPEG_A),
    ])
    report = import_dataset(src, tmp_path / "raw")

    assert _read_csv(tmp_path / "raw" / "metadata.csv") == [
        HEADER, ["colonoscopy", "q1", "", "imgA"], ["colonoscopy", "q2", "yes", "imgA"]]
    assert (report["rows_with_missing_answer"], report["rows_written"], report["skipped_rows"]) == (1, 2, 0)


def _write_csv_input(folder: Path, header: list[str], rows: list[list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metadata.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])
    return path


def test_csv_with_images_folder_including_a_missing_image(tmp_path: Path) -> None:
    src = _write_csv_input(tmp_path / "in", ["img_id", "answer", "extra", "question", "source"], [
        ["imgA", "no", "x", "Are there any instrumnets in the image?", "colonoscopy"],
        ["imgP", "", "x", "q2", "gastroscopy"],
        ["imgGone", "yes", "x", "q3", "colonoscopy"],
    ])
    (tmp_path / "in" / "images").mkdir()
    (tmp_path / "in" / "images" / "imgA.jpg").write_bytes(JPEG_A)
    (tmp_path / "in" / "images" / "imgP.jpg").write_bytes(PNG)  # a PNG behind a .jpg name
    out = tmp_path / "raw"
    report = import_dataset(src, out)

    assert (out / "metadata.csv").read_text(encoding="utf-8") == (
        "source,question,answer,img_id\n"
        "colonoscopy,Are there any instrumnets in the image?,no,imgA\n"
        "gastroscopy,q2,,imgP\n"
    )
    assert (out / "images" / "imgA.jpg").read_bytes() == JPEG_A
    assert (out / "images" / "imgP.jpg").read_bytes().startswith(b"\xff\xd8\xff")
    assert report["input_kind"] == "csv"
    assert report["skipped_by_reason"]["missing_image"] == 1
    assert (report["rows_read"], report["rows_written"], report["images_written"]) == (3, 2, 2)
    assert (report["reencoded_images"], report["rows_with_missing_answer"]) == (1, 1)
    skipped = _read_csv(tmp_path / "import_skipped.csv")
    assert [r[:2] + r[3:] for r in skipped[1:]] == [["3", "missing_image", "colonoscopy", "q3", "yes", "imgGone"]]
    assert "imgGone.jpg" in skipped[1][2]


def test_csv_images_dir_override(tmp_path: Path) -> None:
    src = _write_csv_input(tmp_path / "in", HEADER, [["colonoscopy", "q", "a", "imgA"]])
    pics = tmp_path / "elsewhere"
    pics.mkdir()
    (pics / "imgA.jpg").write_bytes(JPEG_A)
    report = import_dataset(src, tmp_path / "raw", images_dir=pics)

    assert (tmp_path / "raw" / "images" / "imgA.jpg").read_bytes() == JPEG_A
    assert (report["rows_written"], report["skipped_rows"]) == (1, 0)


def test_csv_with_wrong_header_names_the_expected_columns(tmp_path: Path) -> None:
    src = _write_csv_input(tmp_path / "in", ["source", "question", "label", "image"], [["c", "q", "a", "x"]])
    (tmp_path / "in" / "images").mkdir()
    with pytest.raises(SurgvqaError, match="source,question,answer,img_id"):
        import_dataset(src, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert not (tmp_path / "import_report.json").exists()


def test_parquet_missing_column_and_unknown_extension_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), bad)
    with pytest.raises(SurgvqaError, match="image, source, question, answer, img_id"):
        import_dataset(bad, tmp_path / "raw")
    other = tmp_path / "data.json"
    other.write_text("{}", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=r"\.parquet.*\.csv"):
        import_dataset(other, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_non_empty_out_dir_is_never_overwritten(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgA", JPEG_A)])
    out = tmp_path / "raw"
    out.mkdir()
    (out / "metadata.csv").write_text("keep me\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match="--to"):
        import_dataset(src, out)
    assert _files(out) == {"metadata.csv"}
    assert (out / "metadata.csv").read_text(encoding="utf-8") == "keep me\n"


def test_empty_existing_out_dir_is_filled(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgA", JPEG_A)])
    (tmp_path / "raw").mkdir()
    report = import_dataset(src, tmp_path / "raw")
    assert _files(tmp_path / "raw") == {"metadata.csv", "images/imgA.jpg"}
    assert report["rows_written"] == 1


def test_unreadable_parquet_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(GARBAGE)
    with pytest.raises(SurgvqaError, match="not a readable parquet file"):
        import_dataset(bad, tmp_path / "raw")
    assert _files(tmp_path) == {"broken.parquet"}


def test_failure_midway_leaves_no_half_written_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgA", JPEG_A)])

    def disk_full(self: object, img_id: str, data: bytes) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("surgvqa.data.importer._Images._write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        import_dataset(src, tmp_path / "raw")
    assert _files(tmp_path) == {"in.parquet"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_malformed_csv_rows_are_skipped_with_reason_not_misread(tmp_path: Path) -> None:
    src = tmp_path / "in" / "metadata.csv"
    (tmp_path / "in" / "images").mkdir(parents=True)
    (tmp_path / "in" / "images" / "imgA.jpg").write_bytes(JPEG_A)
    src.write_bytes(
        b"img_id,source,question,answer\n"
        b"imgA,Polyps,What color is it? If more than one, separate with ;,red\n"  # unquoted comma
        b"imgA,Polyps,Is there text?,\xff\xfeyes\n"                                        # not UTF-8
        b"imgA,Polyps,Is there text?,no\n")
    out = tmp_path / "raw"
    report = import_dataset(src, out)
    assert (out / "metadata.csv").read_text(encoding="utf-8") == (
        "source,question,answer,img_id\nPolyps,Is there text?,no,imgA\n")
    assert report["skipped_by_reason"]["wrong_field_count"] == 1
    assert report["skipped_by_reason"]["non_utf8"] == 1
    skipped = _read_csv(tmp_path / "import_skipped.csv")
    assert [r[1] for r in skipped[1:]] == ["wrong_field_count", "non_utf8"]
    assert "\\xff\\xfeyes" in skipped[2][-2]  # the bad bytes are shown, not lost
