"""The shared file helpers: atomic writes and JSON-lines errors that name the line."""

import json

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.io import atomic_open, iter_jsonl, read_jsonl, write_json, write_jsonl


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_partial(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write('{"version": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_first_write_leaves_no_file(tmp_path):
    def rows():
        yield {"a": 1}
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "rows.jsonl", rows())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad_line, reason", [
    ('[1, 2]', "expected a JSON object, got list"),
    ('"text"', "expected a JSON object, got str"),
    ('{"a": ', "not valid JSON"),
])
def test_a_bad_line_is_named(tmp_path, bad_line, reason):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n' + bad_line + "\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=rf"rows.jsonl:3: {reason}"):
        read_jsonl(path)


def test_non_utf8_bytes_are_named_by_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(SurgvqaError, match=r"rows.jsonl:2: not valid UTF-8"):
        read_jsonl(path)


def test_streaming_reads_lazily(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n[2]\n', encoding="utf-8")
    rows = iter_jsonl(path)
    assert next(rows) == {"a": 1}  # the bad second line is only reached when asked for
    with pytest.raises(SurgvqaError, match="rows.jsonl:2"):
        next(rows)


def test_numbered_lines_count_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    from surgvqa.io import numbered_jsonl

    assert list(numbered_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_replace_folder_swaps_by_renames_and_leaves_nothing_beside(tmp_path):
    from surgvqa.io import replace_folder

    target, complete = tmp_path / "out", tmp_path / ".out.partial"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (tmp_path / ".out.old").mkdir()  # a leftover of a swap killed midway
    complete.mkdir()
    (complete / "new.txt").write_text("new")
    replace_folder(target, complete)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
