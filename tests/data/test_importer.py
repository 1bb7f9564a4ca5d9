"""`surgvqa data import` core: parquet and CSV inputs, skip reasons, report, refusal to overwrite, and the
import failing exactly where ingest on the original source fails."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from surgvqa.data import ingest
from surgvqa.data.importer import import_dataset
from surgvqa.errors import SurgvqaError
from tests.conftest import jpeg_bytes, section, write_raw
from tests.data.file_access import file_access, strays

HEADER = ["source", "question", "answer", "img_id"]
SKIPPED_HEADER = ["row", "lines", "reason", "detail", *HEADER]
NO_SKIPS = {"unsafe_img_id": 0, "missing_image": 0, "unsafe_image_file": 0, "undecodable_image": 0,
            "conflicting_image": 0}
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _image(fmt: str, colour: tuple[int, int, int] = (200, 30, 40), size: tuple[int, int] = (48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


JPEG_A = _image("JPEG", (200, 30, 40))
JPEG_B = _image("JPEG", (20, 180, 40))
PNG = _image("PNG", (10, 20, 230), size=(36, 30))
GARBAGE = b"this is not an image at all"


def import_dataset_at(source: Path, out_dir: Path, images_dir: Path | None = None, max_bad_fraction: float = 1.0):
    """The import with ingest's limit (1.0 = any loss allowed: these tests are about what is skipped and why)."""
    return import_dataset(source, out_dir, images_dir, ingest=section("ingest", max_bad_fraction=max_bad_fraction))


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
    report = import_dataset_at(src, out)

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
        "reencoded_images": 0, "rows_with_missing_answer": 0, "skipped_rows": 0, "skipped_by_reason": NO_SKIPS,
        "checked_rows": 4, "ingest_quarantined_rows": 0, "ingest_quarantined_by_reason": {}, "bad_rows": 0,
        "bad_fraction": 0.0, "max_bad_fraction": 1.0, "passed": True,
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
    report = import_dataset_at(src, tmp_path / "raw")

    assert _read_csv(tmp_path / "raw" / "metadata.csv") == [
        HEADER, ["colonoscopy", "q1", "a1", "imgA"], ["gastroscopy", "q2", "a2", "imgB"]]
    assert (tmp_path / "raw" / "images" / "imgB.jpg").read_bytes() == JPEG_B
    assert (report["input_kind"], report["rows_read"], report["images_written"]) == ("parquet", 2, 2)


def test_png_is_reencoded_to_a_decodable_jpeg(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgP", PNG)])
    report = import_dataset_at(src, tmp_path / "raw")

    written = (tmp_path / "raw" / "images" / "imgP.jpg").read_bytes()
    assert written.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(written)) as im:
        im.load()
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (36, 30))
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
    report = import_dataset_at(src, out)

    assert report["skipped_by_reason"] == {"unsafe_img_id": 1, "missing_image": 2, "unsafe_image_file": 0,
                                           "undecodable_image": 1, "conflicting_image": 1}
    assert (report["rows_read"], report["rows_written"], report["skipped_rows"]) == (7, 2, 5)
    assert report["images_written"] == 1
    assert _read_csv(out / "metadata.csv") == [HEADER, ["colonoscopy", "q1", "a1", "imgA"],
                                               ["colonoscopy", "q7", "a7", "imgA"]]
    assert (out / "images" / "imgA.jpg").read_bytes() == JPEG_A  # the first image, never the conflicting one
    assert _files(out) == {"metadata.csv", "images/imgA.jpg"}
    assert not list(tmp_path.rglob("evil*")), "an unsafe img_id must never become a file"

    skipped = _read_csv(tmp_path / "work" / "import_skipped.csv")
    assert skipped[0] == SKIPPED_HEADER
    assert [(r[0], r[1], r[2], *r[4:]) for r in skipped[1:]] == [
        ("2", "1", "unsafe_img_id", "colonoscopy", "q2", "a2", "../evil"),
        ("3", "1", "missing_image", "colonoscopy", "q3", "a3", "imgNull"),
        ("4", "1", "missing_image", "colonoscopy", "q4", "a4", "imgEmpty"),
        ("5", "1", "undecodable_image", "colonoscopy", "q5", "a5", "imgBad"),
        ("6", "1", "conflicting_image", "colonoscopy", "q6", "a6", "imgA"),
    ]
    assert all(r[3] for r in skipped[1:]), "every skipped row says why"
    assert "row 1" in skipped[5][3]


def test_missing_answer_is_kept_as_empty_and_counted(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [
        ("colonoscopy", "q1", None, "imgA", JPEG_A),
        ("colonoscopy", "q2", "yes", "imgA", JPEG_A),
    ])
    report = import_dataset_at(src, tmp_path / "raw")

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
    report = import_dataset_at(src, out)

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
    assert [r[:3] + r[4:] for r in skipped[1:]] == [["3", "1", "missing_image", "colonoscopy", "q3", "yes",
                                                     "imgGone"]]
    assert "imgGone.jpg" in skipped[1][3]


def test_csv_images_dir_override(tmp_path: Path) -> None:
    src = _write_csv_input(tmp_path / "in", HEADER, [["colonoscopy", "q", "a", "imgA"]])
    pics = tmp_path / "elsewhere"
    pics.mkdir()
    (pics / "imgA.jpg").write_bytes(JPEG_A)
    report = import_dataset_at(src, tmp_path / "raw", images_dir=pics)

    assert (tmp_path / "raw" / "images" / "imgA.jpg").read_bytes() == JPEG_A
    assert (report["rows_written"], report["skipped_rows"]) == (1, 0)


def test_csv_with_wrong_header_names_the_expected_columns(tmp_path: Path) -> None:
    src = _write_csv_input(tmp_path / "in", ["source", "question", "label", "image"], [["c", "q", "a", "x"]])
    (tmp_path / "in" / "images").mkdir()
    with pytest.raises(SurgvqaError, match="source,question,answer,img_id"):
        import_dataset_at(src, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert not (tmp_path / "import_report.json").exists()


def test_parquet_missing_column_and_unknown_extension_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), bad)
    with pytest.raises(SurgvqaError, match="image, source, question, answer, img_id"):
        import_dataset_at(bad, tmp_path / "raw")


def test_parquet_without_its_image_column_names_the_file_the_column_and_what_it_has(tmp_path: Path) -> None:
    src = tmp_path / "export" / "train-00000.parquet"
    _write_parquet(src, [("colonoscopy", "q", "a", "imgA", JPEG_A)])
    pq.write_table(pq.read_table(src).drop(["image"]).rename_columns(["source", "question", "answer", "picture"]),
                   src)
    with pytest.raises(SurgvqaError) as e:
        import_dataset_at(src.parent, tmp_path / "data" / "raw")
    message = str(e.value)
    assert message.startswith(f"{src} lacks column(s) image, img_id; it has source, question, answer, picture.")
    assert "Expected the Kvasir-VQA parquet columns image, source, question, answer, img_id" in message
    assert not (tmp_path / "data").exists(), "a refused input writes nothing"
    other = tmp_path / "data.json"
    other.write_text("{}", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=r"\.parquet.*\.csv"):
        import_dataset_at(other, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_non_empty_out_dir_is_never_overwritten(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgA", JPEG_A)])
    out = tmp_path / "raw"
    out.mkdir()
    (out / "metadata.csv").write_text("keep me\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match="--to"):
        import_dataset_at(src, out)
    assert _files(out) == {"metadata.csv"}
    assert (out / "metadata.csv").read_text(encoding="utf-8") == "keep me\n"


def test_empty_existing_out_dir_is_filled(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgA", JPEG_A)])
    (tmp_path / "raw").mkdir()
    report = import_dataset_at(src, tmp_path / "raw")
    assert _files(tmp_path / "raw") == {"metadata.csv", "images/imgA.jpg"}
    assert report["rows_written"] == 1


def test_unreadable_parquet_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(GARBAGE)
    with pytest.raises(SurgvqaError, match="not a readable parquet file"):
        import_dataset_at(bad, tmp_path / "raw")
    assert _files(tmp_path) == {"broken.parquet"}


def test_failure_midway_leaves_no_half_written_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write_parquet(tmp_path / "in.parquet", [("colonoscopy", "q", "a", "imgA", JPEG_A)])

    def disk_full(self: object, img_id: str, data: bytes) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("surgvqa.data.importer._Images._write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        import_dataset_at(src, tmp_path / "raw")
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
    report = import_dataset_at(src, out)
    assert (out / "metadata.csv").read_text(encoding="utf-8") == (
        "source,question,answer,img_id\nPolyps,Is there text?,no,imgA\n")
    assert report["skipped_by_reason"]["wrong_field_count"] == 1
    assert report["skipped_by_reason"]["non_utf8"] == 1
    skipped = _read_csv(tmp_path / "import_skipped.csv")
    assert [r[2] for r in skipped[1:]] == ["wrong_field_count", "non_utf8"]
    assert "\\xff\\xfeyes" in skipped[2][-2]  # the bad bytes are shown, not lost


# --- The import fails exactly where ingest on the original source fails -------------------------------------

QUESTIONS = ("Is there text?", "What type of procedure is the image taken from?", "How many polyps are in the image?",
             "Are there any instruments in the image? Check all that are present.", "Have all polyps been removed?")
ANSWERS = ("no", "colonoscopy", "1", "none", "not relevant")


def _export(folder: Path) -> Path:
    """A CSV export of 45 rows: 9 images with 5 questions each."""
    rows = [("Polyps", q, a, f"img{i}") for i in range(9) for q, a in zip(QUESTIONS, ANSWERS)]
    return write_raw(folder, rows, {f"img{i}": jpeg_bytes(i) for i in range(9)})


def _edit_rows(export: Path, edit) -> None:
    path = export / "metadata.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for index, change in edit.items():  # index: data row from 0
        lines[index + 1] = change(lines[index + 1])
    path.write_text("".join(lines), encoding="utf-8")


def _stray_quote(export: Path) -> None:  # row 21 opens a quote never closed: it swallows rows 21-45
    _edit_rows(export, {20: lambda line: line.replace(",", ',"', 1)})


def _missing_image(export: Path) -> None:  # 5 of 45 rows (11 %) have no image
    (export / "images" / "img0.jpg").unlink()


def _losses_add_up(export: Path) -> None:  # 2 rows without an image (import) + 1 `nan` answer (ingest): 6.7 %
    _edit_rows(export, {0: lambda line: line.replace("img0", "gone"), 1: lambda line: line.replace("img0", "gone"),
                        12: lambda line: line.replace(",1,", ",nan,")})


def _two_missing(export: Path) -> None:  # 2 of 45 rows without an image: 4.4 %, within the limit
    _edit_rows(export, {0: lambda line: line.replace("img0", "gone"), 1: lambda line: line.replace("img0", "gone")})


def _one_each(export: Path) -> None:  # 1 row without an image, 1 `nan` answer: 4.4 %, within the limit
    _edit_rows(export, {0: lambda line: line.replace("img0", "gone"), 12: lambda line: line.replace(",1,", ",nan,")})


def _ingest(raw_dir: Path, out: Path, params) -> tuple[bool, dict]:
    """(failed, report) of the real ingest stage on raw_dir."""
    try:
        ingest.run(raw_dir, out, out / "ingest.json", params)
        failed = False
    except SurgvqaError:
        failed = True
    return failed, json.loads((out / "ingest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("corrupt, fails, bad", [
    (_stray_quote, True, 25), (_missing_image, True, 5), (_losses_add_up, True, 3),
    (_two_missing, False, 2), (_one_each, False, 2),
])
def test_import_fails_exactly_where_ingest_on_the_source_fails(tmp_path: Path, corrupt, fails: bool, bad: int) -> None:
    export, data = _export(tmp_path / "export"), tmp_path / "data"
    corrupt(export)
    source_bytes = {p: p.read_bytes() for p in export.rglob("*") if p.is_file()}
    params = section("ingest")  # the project's limit: 5 %
    with file_access() as access:
        direct_failed, direct = _ingest(export, data / "direct", params)
        try:
            import_dataset(export / "metadata.csv", data / "raw", None, ingest=params)
            error = ""
        except SurgvqaError as e:
            error = str(e)
        report = json.loads((data / "import_report.json").read_text(encoding="utf-8"))
        if not error:
            after_failed, after = _ingest(data / "raw", data / "after", params)

    # The corpus covers both directions: ingest on the source fails for the first three and passes for the rest.
    assert (direct_failed, direct["rows_quarantined"], direct["rows_total"]) == (fails, bad, 45)
    assert bool(error) == fails and report["passed"] == (not fails)
    assert (report["rows_read"], report["checked_rows"], report["bad_rows"]) == (45, 45, bad)
    # The same rows are lost for the same reasons: import's skips plus ingest's quarantine of what it placed.
    lost: dict[str, int] = dict(report["ingest_quarantined_by_reason"])
    for reason, n in report["skipped_by_reason"].items():
        lost[reason] = lost.get(reason, 0) + n
    assert {k: n for k, n in lost.items() if n} == direct["quarantined_by_reason"]
    skipped = _read_csv(data / "import_skipped.csv")[1:]
    assert sum(int(r[1]) for r in skipped) == report["skipped_rows"] == bad - report["ingest_quarantined_rows"]
    if fails:
        assert f"import: {bad} of 45 source rows would not reach training" in error
        assert "ingest.max_bad_fraction 5.0%" in error and str(data / "import_skipped.csv") in error
        assert not (data / "raw").exists() and not (data / ".raw.importing").exists(), "no layout on failure"
    else:
        assert not after_failed and after["rows_ok"] == direct["rows_ok"] == 45 - bad
        assert after["rows_quarantined"] == report["ingest_quarantined_rows"]
        # Every good row survives byte for byte: the layout's rows are source lines, the QA tables are equal.
        source_lines = (export / "metadata.csv").read_bytes().splitlines(keepends=True)
        assert set((data / "raw" / "metadata.csv").read_bytes().splitlines(keepends=True)) <= set(source_lines)
        assert (data / "after" / "qa.jsonl").read_bytes() == (data / "direct" / "qa.jsonl").read_bytes()
        for image in (data / "raw" / "images").iterdir():
            assert image.read_bytes() == source_bytes[export / "images" / image.name]
    assert {p: p.read_bytes() for p in export.rglob("*") if p.is_file()} == source_bytes, "the source is untouched"
    assert access and strays(access, data, reads=(export,)) == [], "nothing outside the data folder is touched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "export"]
    assert not [p for p in data.iterdir() if p.name.startswith(".")], "no staging or check folder left behind"


def test_a_stray_quote_counts_every_row_it_swallows(tmp_path: Path) -> None:
    export, data = _export(tmp_path / "export"), tmp_path / "data"
    _stray_quote(export)
    with pytest.raises(SurgvqaError, match="25 of 45 source rows"):
        import_dataset(export / "metadata.csv", data / "raw", None, ingest=section("ingest"))
    report = json.loads((data / "import_report.json").read_text(encoding="utf-8"))
    assert report["skipped_rows"] == 25 and report["rows_read"] == 45
    ((row, lines, reason, detail, *_),) = _read_csv(data / "import_skipped.csv")[1:]
    assert (row, lines) == ("21", "25") and reason in report["skipped_by_reason"]
    assert "lines 22-46" in detail  # physical lines of the file, header included
    # With the limit raised, the 20 rows before the quote are imported byte for byte.
    report = import_dataset(export / "metadata.csv", data / "raw", None,
                            ingest=section("ingest", max_bad_fraction=0.6))
    assert (report["rows_written"], report["skipped_rows"], report["passed"]) == (20, 25, True)
    source = (export / "metadata.csv").read_bytes().splitlines(keepends=True)
    assert (data / "raw" / "metadata.csv").read_bytes().splitlines(keepends=True) == source[:21]


def test_an_empty_source_is_refused(tmp_path: Path) -> None:
    export = write_raw(tmp_path / "export", [], {})
    with pytest.raises(SurgvqaError, match="holds no data rows"):
        import_dataset_at(export / "metadata.csv", tmp_path / "data" / "raw")
    assert not (tmp_path / "data" / "raw").exists()


def _linked_image(export: Path) -> None:  # img0.jpg is a link to a picture outside the image folder
    outside = export / "elsewhere.jpg"
    (export / "images" / "img0.jpg").rename(outside)
    (export / "images" / "img0.jpg").symlink_to(outside)


def test_an_image_that_is_a_link_or_a_fifo_is_refused_as_ingest_refuses_it(tmp_path: Path) -> None:
    export, data = _export(tmp_path / "export"), tmp_path / "data"
    _linked_image(export)
    (export / "images" / "img1.jpg").unlink()
    os.mkfifo(export / "images" / "img1.jpg")  # opening a FIFO for reading blocks: followed, the import would hang
    (export / "images" / "img2.jpg").write_bytes(b"")
    params = section("ingest", max_bad_fraction=1.0)
    _, direct = _ingest(export, data / "direct", params)
    report = import_dataset(export / "metadata.csv", data / "raw", None, ingest=params)

    assert report["skipped_by_reason"] == {**NO_SKIPS, "unsafe_image_file": 10, "undecodable_image": 5}
    assert direct["quarantined_by_reason"] == {"unsafe_image_file": 10, "undecodable_image": 5}
    assert sorted(p.name for p in (data / "raw" / "images").iterdir()) == [f"img{i}.jpg" for i in range(3, 9)]
    secret = (export / "elsewhere.jpg").read_bytes()
    assert all(p.read_bytes() != secret for p in data.rglob("*.jpg")), "the linked picture was copied in"
    details = {r[3] for r in _read_csv(data / "import_skipped.csv")[1:]}
    assert details == {"img0.jpg is a symbolic link or cannot be opened (Too many levels of symbolic links); "
                       "not followed", "img1.jpg is not a regular file",
                       f"{export / 'images' / 'img2.jpg'} is empty (0 bytes)"}
