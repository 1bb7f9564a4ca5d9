"""A corpus of bad raw data (issue 13, "Bad input, tried"): each case checks the reason and the counts in the
quarantine (or the error), that every good row survives byte for byte, and that nothing outside the data folder
is read or written (file_access.py's audit hook records every file the stage touches)."""

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from surgvqa.data.ingest import ingest_raw
from surgvqa.data.questions import Q_ABNORMALITY_LOCATION, Q_POLYP_COUNT, Q_POLYP_SIZE, Q_POLYP_TYPE, Q_TEXT
from surgvqa.errors import SurgvqaError
from tests.conftest import jpeg_bytes, section, write_raw
from tests.data.file_access import file_access, strays
from tests.data.test_ingest import quarantine_of

GOOD = ("Polyps", Q_TEXT, "yes", "good")  # one clean row in every case: it must come out unchanged
GOOD_ROW = {"img_id": "good", "image": "images/good.jpg", "source": "Polyps", "question": Q_TEXT, "answer": "yes"}


def image(size, fmt="JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (180, 90, 60)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose header (SOF0) claims width x height: what a decompression bomb shows first."""
    data = bytearray(image((32, 32)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def ingest_case(tmp_path, rows, images, *, extra_bytes=b"", header=("source", "question", "answer", "img_id"),
                **changes):
    """Write a raw layout (GOOD first), ingest it with the audit on; (kept rows, quarantine, report)."""
    raw = write_raw(tmp_path / "raw", [GOOD, *rows], {"good": jpeg_bytes(1), **images}, header=header)
    if extra_bytes:
        with (raw / "metadata.csv").open("ab") as f:
            f.write(extra_bytes)
    return run_ingest(tmp_path, raw, **changes)


def run_ingest(tmp_path, raw, **changes):
    out = tmp_path / "out"
    params, before = section("ingest", **{"max_bad_fraction": 1.0, **changes}), _tree(tmp_path, out)
    with file_access() as access:
        report = ingest_raw(raw, out, params)
    # Writes only in the output folder, reads only there and in the raw folder.
    assert access and strays(access, out, reads=(raw,)) == [], "ingest touched files outside the data folder"
    assert _tree(tmp_path, out) == before, "ingest changed a file outside its output folder"
    text = (out / "qa.jsonl").read_text(encoding="utf-8")
    kept = [json.loads(line) for line in text.splitlines()]
    q = quarantine_of(out / "quarantine.csv")
    assert report["rows_total"] == (report["rows_ok"] + report["rows_quarantined"]
                                    + report["conflicting_answers"]["rows_merged_into_another"])
    assert report["rows_quarantined"] == sum(int(r["lines"]) for r in q)
    return kept, q, report


def _tree(root: Path, skip: Path) -> dict:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
            if p != skip and skip not in p.parents}


def reasons(q) -> list[tuple[str, str]]:
    return [(r["reason"], r["img_id"]) for r in q]


# ---- the CSV itself ----------------------------------------------------------------------------------------

def test_truncated_csv_last_row_cut_mid_field(tmp_path):
    kept, q, report = ingest_case(tmp_path, [], {}, extra_bytes=b"Polyps,What type of polyp is present?,paris i")
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["line"], r["answer"]) for r in q] == [("unterminated_last_row", "3", "paris i")]
    assert report["quarantined_by_reason"] == {"unterminated_last_row": 1}


def test_truncated_csv_cut_inside_a_quoted_field(tmp_path):
    kept, q, report = ingest_case(tmp_path, [("Polyps", Q_TEXT, "no", "good2")], {"good2": jpeg_bytes(2)},
                                  extra_bytes=b'Polyps,"Is there a green/black box artefact?,n')
    assert kept == [GOOD_ROW, {**GOOD_ROW, "img_id": "good2", "image": "images/good2.jpg", "answer": "no"}]
    assert [(r["reason"], r["detail"]) for r in q] == [("malformed_csv", "line 4: unexpected end of data")]


def test_a_quote_followed_by_text_is_malformed_not_mended(tmp_path):
    # Lenient CSV parsing would read '"paris i"ia' as 'paris iia'; strict parsing refuses the record only.
    kept, q, _ = ingest_case(tmp_path, [], {}, extra_bytes=b'Polyps,What type of polyp is present?,"paris i"ia,good\n'
                                                            b"Polyps,Is there text?,yes,good\n")
    assert [(r["reason"], r["line"]) for r in q] == [("malformed_csv", "3"), ("duplicate_row", "4")]
    assert kept == [GOOD_ROW]


@pytest.mark.parametrize("header, match", [
    (("source", "question", "label", "img_id"), r"missing \['answer'\]"),
    (("source", "question", "answer", "answer", "img_id"), r"repeated \['answer'\]"),
    (("question", "source", "answer"), r"missing \['img_id'\]"),
])
def test_wrong_header_is_a_clear_error(tmp_path, header, match):
    raw = write_raw(tmp_path / "raw", [("a",) * len(header)], {}, header=header)
    with pytest.raises(SurgvqaError, match=rf"metadata.csv: unknown column layout.*{match}.*surgvqa data import"):
        ingest_raw(raw, tmp_path / "out", section("ingest"))


def test_reordered_header_is_matched_by_name(tmp_path):
    kept, q, _ = ingest_case(tmp_path, [("good", "no", Q_POLYP_TYPE, "Polyps")], {},
                             header=("img_id", "answer", "question", "source"))
    assert kept == [{**GOOD_ROW, "question": Q_POLYP_TYPE, "answer": "no"}]
    # GOOD was written in the default order under the reordered header: its source reads as an img_id.
    assert reasons(q) == [("missing_image", "Polyps")]


def test_duplicated_rows_are_kept_once_and_counted(tmp_path):
    rows = [GOOD, GOOD, ("Polyps", Q_ABNORMALITY_LOCATION, "center; upper-left", "good"),
            ("Polyps", Q_ABNORMALITY_LOCATION, "upper-left; center", "good")]  # the same values in another order
    kept, q, report = ingest_case(tmp_path, rows, {})
    assert kept == [GOOD_ROW, {**GOOD_ROW, "question": Q_ABNORMALITY_LOCATION, "answer": "center; upper-left"}]
    assert [(r["reason"], r["line"], r["detail"]) for r in q] == [
        ("duplicate_row", "3", "line 2 gives the same answer for this image"),
        ("duplicate_row", "4", "line 2 gives the same answer for this image"),
        ("duplicate_row", "6", "line 5 gives the same answer for this image")]
    assert report["quarantined_by_reason"] == {"duplicate_row": 3}


@pytest.mark.parametrize("answer", ["nan", "NaN", "NAN", "", "   ", "\t"])
def test_nan_empty_and_whitespace_answers(tmp_path, answer):
    kept, q, report = ingest_case(tmp_path, [("Polyps", Q_POLYP_TYPE, answer, "good")], {})
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["answer"]) for r in q] == [("missing_answer", answer.strip())]
    assert report["quarantined_by_reason"] == {"missing_answer": 1}


def test_quotes_and_commas_survive_byte_for_byte_and_newlines_are_quarantined(tmp_path):
    rows = [("Polyps", 'Is the "box", if any, green?', 'yes, "clearly"', "good"),
            ("Polyps", "Is this finding\neasy to detect?", "yes", "good"),
            ("Polyps", "Is this finding easy to detect?", "yes\r\nno", "good"),
            ("Polyps", "Is this\tfinding easy to detect?", "yes", "good")]
    kept, q, report = ingest_case(tmp_path, rows, {})
    assert kept == [GOOD_ROW, {**GOOD_ROW, "question": 'Is the "box", if any, green?', "answer": 'yes, "clearly"'}]
    assert [(r["reason"], r["line"], r["lines"]) for r in q] == [
        ("multiline_record", "4", "2"), ("multiline_record", "6", "2"), ("control_character", "8", "1")]
    assert report["rows_total"] == 7 and report["rows_quarantined"] == 5


def test_non_utf8_bytes_quarantine_only_their_row(tmp_path):
    kept, q, _ = ingest_case(tmp_path, [], {}, extra_bytes=b"Polyps,What type of polyp is present?,paris \xe9,good\n"
                                                            b"Polyps,What type of polyp is present?,paris ip,good\n")
    assert kept == [GOOD_ROW, {**GOOD_ROW, "question": Q_POLYP_TYPE, "answer": "paris ip"}]
    assert [(r["reason"], r["answer"]) for r in q] == [("non_utf8", "paris \\xe9")]


def test_a_bom_at_the_start_is_read_as_utf8_and_one_inside_is_refused(tmp_path):
    raw = write_raw(tmp_path / "raw", [GOOD], {"good": jpeg_bytes(1)})
    text = (raw / "metadata.csv").read_bytes()
    (raw / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + text + "\ufeffPolyps,Is there text?,no,good\n".encode())
    kept, q, _ = run_ingest(tmp_path, raw)
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["detail"]) for r in q] == [("control_character", "a control or format character in source")]


# ---- img_id and the images folder --------------------------------------------------------------------------

@pytest.mark.parametrize("img_id", ["sub/good", "..", "../good", "/etc/hostname", "good\x00x", "C:\\good", " ",
                                    ".hidden"])
def test_unsafe_img_ids_never_become_paths(tmp_path, img_id):
    kept, q, _ = ingest_case(tmp_path, [("Polyps", Q_POLYP_TYPE, "none", img_id)], {})
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["detail"]) for r in q] == [
        ("unsafe_img_id", f"img_id {img_id.strip()!r} is not a plain file name; no path was built from it")]


def test_symlinks_in_images_are_refused_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = jpeg_bytes(9)  # a valid picture: following the link would accept it
    (outside / "secret.jpg").write_bytes(secret)
    os.mkfifo(outside / "pipe")  # opening a FIFO blocks: following this link would hang or say "not regular"
    raw = write_raw(tmp_path / "raw", [GOOD, ("Polyps", Q_TEXT, "no", "leak"), ("Polyps", Q_TEXT, "no", "pipe"),
                                       ("Polyps", Q_TEXT, "no", "alias"), ("Polyps", Q_TEXT, "no", "fifo")],
                    {"good": jpeg_bytes(1)})
    (raw / "images" / "leak.jpg").symlink_to(outside / "secret.jpg")
    (raw / "images" / "pipe.jpg").symlink_to(outside / "pipe")
    (raw / "images" / "alias.jpg").symlink_to("good.jpg")  # even a link inside the folder: links are not data
    os.mkfifo(raw / "images" / "fifo.jpg")
    atime = (outside / "secret.jpg").stat().st_atime_ns
    kept, q, report = run_ingest(tmp_path, raw)
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["img_id"], "symbolic link" in r["detail"]) for r in q] == [
        ("unsafe_image_file", "leak", True), ("unsafe_image_file", "pipe", True),
        ("unsafe_image_file", "alias", True), ("unsafe_image_file", "fifo", False)]
    assert q[-1]["detail"] == "fifo.jpg is not a regular file"
    assert report["images_ok"] == 1 and report["quarantined_by_reason"] == {"unsafe_image_file": 4}
    assert (outside / "secret.jpg").stat().st_atime_ns == atime
    assert secret not in b"".join(p.read_bytes() for p in (tmp_path / "out").iterdir())


def test_a_linked_images_folder_or_metadata_file_is_an_error(tmp_path):
    elsewhere = write_raw(tmp_path / "elsewhere", [GOOD], {"good": jpeg_bytes(1)})
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "metadata.csv").symlink_to(elsewhere / "metadata.csv")
    (raw / "images").mkdir()
    with pytest.raises(SurgvqaError, match="metadata.csv cannot be opened .*not a symbolic link"):
        ingest_raw(raw, tmp_path / "out", section("ingest"))
    (raw / "metadata.csv").unlink()
    (raw / "metadata.csv").write_bytes((elsewhere / "metadata.csv").read_bytes())
    (raw / "images").rmdir()
    (raw / "images").symlink_to(elsewhere / "images")
    with pytest.raises(SurgvqaError, match="images is not a plain folder.*not a link to elsewhere"):
        ingest_raw(raw, tmp_path / "out", section("ingest"))


# ---- the images themselves ---------------------------------------------------------------------------------

def test_missing_empty_truncated_and_mislabelled_images(tmp_path):
    good = jpeg_bytes(2)
    images = {"empty": b"", "cut": good[: len(good) // 2], "png": image((64, 64), "PNG"),
              "webp": image((64, 64), "WEBP"), "text": b"GIF? no, plain text"}
    rows = [("Polyps", Q_TEXT, "no", name) for name in ("gone", *images)]
    kept, q, report = ingest_case(tmp_path, rows, images)
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["img_id"]) for r in q] == [
        ("missing_image", "gone"), ("undecodable_image", "empty"), ("undecodable_image", "cut"),
        ("wrong_image_format", "png"), ("wrong_image_format", "webp"), ("undecodable_image", "text")]
    assert q[1]["detail"] == "the file is empty (0 bytes)"
    assert "image file is truncated" in q[2]["detail"]
    assert q[3]["detail"].startswith("PNG data in a .jpg file") and q[4]["detail"].startswith("WEBP data")
    assert (report["images_referenced"], report["images_ok"]) == (7, 1)


def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    images = {"bomb": jpeg_claiming(60000, 60000),  # 3.6 G pixels: Pillow itself refuses to open it
              "huge": jpeg_claiming(5000, 5000),    # 25 M: under Pillow's limit, over ingest.max_image_pixels
              "big": image((80, 60))}               # over a limit lowered for the test
    rows = [("Polyps", Q_TEXT, "no", name) for name in images]
    kept, q, report = ingest_case(tmp_path, rows, images)
    assert kept == [GOOD_ROW, {**GOOD_ROW, "img_id": "big", "image": "images/big.jpg", "answer": "no"}]
    assert [(r["reason"], r["img_id"]) for r in q] == [("image_too_large", "bomb"), ("image_too_large", "huge")]
    assert q[1]["detail"] == "5000x5000 = 25000000 pixels > ingest.max_image_pixels 16777216"
    assert report["max_image_pixels"] == 16777216
    _, q, _ = ingest_case(tmp_path, rows, images, max_image_pixels=4000)
    assert q[-1]["detail"] == "80x60 = 4800 pixels > ingest.max_image_pixels 4000"


SHAPES = {"one": (1, 1), "thin": (300, 1), "tall": (1, 300), "strip": (5601, 28), "edge": (5600, 28),
          "small": (27, 40), "least": (28, 28), "wide": (2000, 30)}


def test_images_the_model_processor_cannot_take_are_quarantined(tmp_path):
    images = {name: image(size) for name, size in SHAPES.items()}
    kept, q, _ = ingest_case(tmp_path, [("Polyps", Q_TEXT, "no", name) for name in images], images)
    assert [r["img_id"] for r in kept] == ["good", "edge", "least", "wide"]
    assert [(r["reason"], r["img_id"]) for r in q] == [
        ("image_too_small", "one"), ("processor_refuses_image", "thin"), ("processor_refuses_image", "tall"),
        ("processor_refuses_image", "strip"), ("image_too_small", "small")]
    assert "absolute aspect ratio must be smaller than 200" in q[1]["detail"]
    # The verdicts agree with the real processor, set up as training sets it up (model.image_pixels).
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    pixels = section("model").image_pixels
    processor = Qwen2VLImageProcessorPil(min_pixels=min(pixels, 56 * 56), max_pixels=pixels)
    for name, size in SHAPES.items():
        refused = [r["reason"] for r in q if r["img_id"] == name]
        try:
            processor(images=[Image.new("RGB", size)], return_tensors="np")
            takes = True
        except ValueError:
            takes = False
        # image_too_small is ingest's own, stricter rule: this transformers blows a 1x1 picture up to 56x56.
        assert takes == (refused in ([], ["image_too_small"])), name


# ---- answers that disagree ---------------------------------------------------------------------------------

CONFLICTS = [
    ("Polyps", Q_POLYP_TYPE, "paris ip", "good"), ("Polyps", Q_POLYP_SIZE, ">20", "good"),
    ("Polyps", Q_POLYP_TYPE, "paris iia", "good"), ("Polyps", Q_POLYP_SIZE, ">20mm", "good"),
    ("Polyps", Q_POLYP_SIZE, "5-10mm", "good"), ("Polyps", Q_POLYP_TYPE, "paris ip", "good"),
    ("Polyps", Q_TEXT, "no", "good"),                                                   # yes/no: contradicts GOOD
    ("Polyps", Q_POLYP_COUNT, "1", "good"), ("Polyps", Q_POLYP_COUNT, "2", "good"),     # counts contradict
    ("Polyps", Q_ABNORMALITY_LOCATION, "none", "good"), ("Polyps", Q_ABNORMALITY_LOCATION, "center", "good"),
]


def test_conflicting_answers_merge_where_the_question_takes_a_list(tmp_path):
    kept, q, report = ingest_case(tmp_path, CONFLICTS, {}, conflicting_answers="merge")
    # Merged at the first row's place: values deduplicated and sorted, joined as the dataset's lists are ("; ",
    # sizes ";" without a space).
    assert kept == [{**GOOD_ROW, "question": Q_POLYP_TYPE, "answer": "paris iia; paris ip"},
                    {**GOOD_ROW, "question": Q_POLYP_SIZE, "answer": "5-10mm;>20mm"}]
    assert [(r["reason"], r["line"], r["answer"]) for r in q] == [
        ("conflicting_answers", "2", "yes"), ("duplicate_row", "6", ">20mm"), ("duplicate_row", "8", "paris ip"),
        ("conflicting_answers", "9", "no"), ("conflicting_answers", "10", "1"), ("conflicting_answers", "11", "2"),
        ("conflicting_answers", "12", "none"), ("conflicting_answers", "13", "center")]
    assert q[0]["detail"] == "line 2: 'yes'; line 9: 'no': contradict, cannot be merged into one answer"
    assert q[1]["detail"] == "line 4 gives the same answer for this image"  # ">20" there, ">20mm" here
    assert report["conflicting_answers"] | {"mergeable_questions": None} == {
        "policy": "merge", "pairs": 5, "pairs_merged": 2, "rows_merged_into_another": 2,
        "mergeable_questions": None}
    assert report["answer_spellings"]["rewritten"] == {">20 -> >20mm": 1}
    assert report["answer_spellings"]["rule"][Q_POLYP_SIZE][">20"] == ">20mm"
    assert report["quarantined_by_reason"] == {"conflicting_answers": 6, "duplicate_row": 2}
    # Evaluation scores the merged answer as a set: either order of the two types is right, one alone is not.
    from surgvqa.evaluate.match import strict_match
    assert strict_match("paris ip; paris iia", kept[0]["answer"], 0.0)
    assert not strict_match("paris ip", kept[0]["answer"], 0.0)


def test_conflicting_answers_quarantine_keeps_neither(tmp_path):
    kept, q, report = ingest_case(tmp_path, CONFLICTS[:5], {}, conflicting_answers="quarantine")
    assert kept == [GOOD_ROW]
    assert [(r["reason"], r["line"], r["answer"]) for r in q] == [
        ("conflicting_answers", "3", "paris ip"), ("conflicting_answers", "4", ">20"),  # as written in the file
        ("conflicting_answers", "5", "paris iia"), ("duplicate_row", "6", ">20mm"),
        ("conflicting_answers", "7", "5-10mm")]
    assert q[0]["detail"] == "line 3: 'paris ip'; line 5: 'paris iia' (ingest.conflicting_answers: quarantine)"
    assert q[1]["detail"] == "line 4: '>20mm'; line 7: '5-10mm' (ingest.conflicting_answers: quarantine)"
    assert report["conflicting_answers"]["pairs"] == 2 and report["conflicting_answers"]["pairs_merged"] == 0


OTHER = ("Normal", Q_TEXT, "no", "other")  # an image with one source: untouched by another image's conflict
OTHER_ROW = {"img_id": "other", "image": "images/other.jpg", "source": "Normal", "question": Q_TEXT, "answer": "no"}


def test_one_image_filed_under_two_sources_giving_the_same_answer_keeps_neither(tmp_path):
    kept, q, report = ingest_case(tmp_path, [("Normal", Q_TEXT, "yes", "good"), OTHER], {"other": jpeg_bytes(3)})
    assert kept == [OTHER_ROW]
    assert [(r["reason"], r["line"], r["source"]) for r in q] == [("conflicting_source", "2", "Polyps"),
                                                                   ("conflicting_source", "3", "Normal")]
    assert q[0]["detail"] == ("the image is filed under 2 sources: 'Polyps' (line 2), 'Normal' (line 3); an image "
                              "has one source in Kvasir-VQA, so none of its rows is kept")
    assert report["quarantined_by_reason"] == {"conflicting_source": 2}
    assert report["images_with_conflicting_sources"] == 1
    assert report["conflicting_answers"]["pairs"] == 0  # not an answer conflict: the same answer


def test_one_image_filed_under_two_sources_with_different_questions_keeps_none_of_its_rows(tmp_path):
    rows = [("Polyps", Q_POLYP_TYPE, "paris ip", "good"), OTHER,
            ("Normal", Q_POLYP_COUNT, "0", "good"),          # another question, another source, rows apart
            ("Polyps", Q_TEXT, "yes", "good"),              # a duplicate of GOOD stays a duplicate
            ("Polyps", Q_POLYP_SIZE, "nan", "good")]        # a missing answer keeps its own reason
    kept, q, report = ingest_case(tmp_path, rows, {"other": jpeg_bytes(3)})
    assert kept == [OTHER_ROW]
    assert [(r["reason"], r["line"]) for r in q] == [
        ("conflicting_source", "2"), ("conflicting_source", "3"), ("conflicting_source", "5"),
        ("duplicate_row", "6"), ("missing_answer", "7")]
    assert report["quarantined_by_reason"] == {"conflicting_source": 3, "duplicate_row": 1, "missing_answer": 1}
    assert (report["rows_total"], report["rows_ok"], report["images_with_conflicting_sources"]) == (6, 1, 1)
    assert "'Polyps' (line 2), 'Normal' (line 5)" in q[0]["detail"]


# ---- the embedded sample -----------------------------------------------------------------------------------

def test_the_embedded_sample_ingests_without_a_quarantine_byte_for_byte(tmp_path):
    import csv

    from surgvqa.data.sample import make_sample
    make_sample(tmp_path / "raw", images=12, seed=0)
    kept, q, report = run_ingest(tmp_path, tmp_path / "raw", max_bad_fraction=0.0)
    with (tmp_path / "raw" / "metadata.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert q == [] and report["conflicting_answers"]["pairs"] == 0
    assert kept == [{"img_id": r["img_id"], "image": f"images/{r['img_id']}.jpg", "source": r["source"],
                     "question": r["question"], "answer": r["answer"]} for r in rows]


# ---- a metadata file ten times larger ----------------------------------------------------------------------

def test_memory_does_not_grow_with_the_metadata_file(tmp_path):
    """A small-scale guard for bench/bench_ingest_memory.py (58,849 and 588,490 rows, numbers in the README):
    Python's peak allocations while ingesting 10x the rows stay about the same, because nothing per row is kept
    in memory."""
    import tracemalloc

    from bench.bench_ingest_memory import make_raw

    peaks = {}
    for rows in (500, 5000):
        make_raw(tmp_path / f"raw{rows}", rows)
        params = section("ingest")
        tracemalloc.start()
        report = ingest_raw(tmp_path / f"raw{rows}", tmp_path / f"out{rows}", params)
        peaks[rows] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report["rows_ok"] == rows and report["rows_quarantined"] == 0
    assert peaks[5000] < 1.5 * peaks[500], peaks
