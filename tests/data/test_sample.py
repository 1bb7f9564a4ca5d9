import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from surgvqa.data import questions as Q
from surgvqa.data.sample import RGB, _shade, cell_box, draw_scene, make_sample
from surgvqa.data.scene import Scene, Thing, answers, sample_scene
from tests.conftest import repo_params

VOCAB = {
    "yes_no": {"yes", "no", "not relevant"},
    "count": {str(n) for n in range(0, 17)},
}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(raw_dir: Path) -> list[dict]:
    with (raw_dir / "metadata.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_same_arguments_same_bytes_and_prefix_stable(tmp_path):
    make_sample(tmp_path / "a", images=12, seed=3)
    make_sample(tmp_path / "b", images=12, seed=3)
    make_sample(tmp_path / "c", images=20, seed=3)
    make_sample(tmp_path / "d", images=12, seed=4)
    a, b, c, d = (_tree_bytes(tmp_path / x) for x in "abcd")
    assert a == b
    # A larger sample extends the smaller one image by image.
    assert all(c[k] == v for k, v in a.items() if k.startswith("images/"))
    assert a != d


def test_layout_questions_and_vocabulary(tmp_path):
    make_sample(tmp_path, images=60, seed=0)
    rows = _rows(tmp_path)
    assert list(rows[0]) == ["source", "question", "answer", "img_id"]
    ids = {r["img_id"] for r in rows}
    assert {p.stem for p in (tmp_path / "images").glob("*.jpg")} == ids and len(ids) == 60
    assert {r["question"] for r in rows} == set(Q.BY_TEXT)  # all 19 questions occur, verbatim
    per_image = [sum(1 for r in rows if r["img_id"] == i) for i in ids]
    assert max(per_image) < 19  # not every question for every image
    assert 6 <= len(rows) / len(ids) <= 12  # about nine per image, as in the real data
    allowed_lists = {
        Q.Q_ABNORMALITIES: set(Q.ABNORMALITIES), Q.Q_LANDMARKS: set(Q.LANDMARKS), Q.Q_INSTRUMENTS: set(Q.INSTRUMENTS),
        Q.Q_ABNORMALITY_COLOUR: set(Q.COLOURS), Q.Q_LANDMARK_COLOUR: set(Q.COLOURS),
        Q.Q_INSTRUMENT_LOCATION: set(Q.GRID_CELLS), Q.Q_ABNORMALITY_LOCATION: set(Q.GRID_CELLS),
        Q.Q_LANDMARK_LOCATION: set(Q.GRID_CELLS),
    }
    for r in rows:
        q, a = r["question"], r["answer"]
        assert r["source"] in Q.SOURCES
        qtype = Q.question_type(q)
        if q in allowed_lists:
            parts = a.split("; ")
            assert parts == ["none"] or set(parts) <= allowed_lists[q], (q, a)
            if Q.question_type(q) == "location":
                assert parts == sorted(parts)  # location lists are alphabetical, as in the real data
        elif q == Q.Q_POLYP_SIZE:
            assert a == "none" or set(a.split(";")) <= set(Q.POLYP_SIZES), a
        elif q == Q.Q_POLYP_TYPE:
            assert a in (*Q.POLYP_TYPES, "none")
        elif q == Q.Q_PROCEDURE:
            assert a in Q.PROCEDURES
        elif qtype in VOCAB:
            assert a in VOCAB[qtype], (q, a)


def _patch_mean(img: Image.Image, x: float, y: float) -> tuple[float, ...]:
    px = [img.getpixel((int(x) + dx, int(y) + dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    return tuple(sum(p[c] for p in px) / len(px) for c in range(3))


def _close(a, b, tol=40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _greenish(p) -> bool:
    return p[1] > p[0] + 60 and p[1] > p[2] + 60


@pytest.mark.parametrize("index", range(80))
def test_answers_are_visible_in_the_picture(index):
    """Decode the saved JPEG and read each grounded answer back from the pixels."""
    scene = sample_scene(0, index)
    buf = io.BytesIO()
    draw_scene(scene).save(buf, format="JPEG", quality=90)
    img = Image.open(buf).convert("RGB")
    w, h = img.size
    truth = answers(scene)

    # Polyps: one blob per counted polyp, in the cell the location answer names, in the colour answered.
    assert truth[Q.Q_POLYP_COUNT] == str(len(scene.polyps))
    for p in scene.polyps:
        x0, y0, x1, y1 = cell_box(p.cell, w, h)
        expected = _shade(RGB[p.colour], scene, not scene.easy_to_detect)
        assert _close(_patch_mean(img, (x0 + x1) / 2, (y0 + y1) / 2), expected), (p, truth)
        assert p.cell in truth[Q.Q_ABNORMALITY_LOCATION].split("; ")
        assert p.colour in truth[Q.Q_ABNORMALITY_COLOUR].split("; ")
    # The green/black box: present exactly when the answer is yes.
    frame = img.getpixel((3, int(h - h / 6)))
    assert _greenish(frame) == (truth[Q.Q_BOX_ARTEFACT] == "yes")
    # Capsule endoscopy: a round field of view, so the corners are black.
    corner = _patch_mean(img, 2, h - 3)
    assert (max(corner) < 30) == (truth[Q.Q_PROCEDURE] == "capsule endoscopy")


def test_text_overlay_exactly_when_answer_is_yes():
    base = dict(img_id="x", source="Normal", procedure="colonoscopy", width=288, height=256)
    bright = []
    for overlay in (False, True):
        img = draw_scene(Scene(**base, text_overlay=overlay))
        strip = [img.getpixel((x, y)) for x in range(2, 120) for y in range(2, 14)]
        bright.append(sum(1 for p in strip if min(p) > 200))
        assert answers(Scene(**base, text_overlay=overlay))[Q.Q_TEXT] == ("yes" if overlay else "no")
    assert bright[0] == 0 and bright[1] > 30


def test_polyp_size_bins_change_the_drawn_size():
    base = dict(img_id="x", source="Polyps", procedure="colonoscopy", width=288, height=256, polyp_type="paris is")
    areas = []
    for size in Q.POLYP_SIZES:
        scene = Scene(**base, polyps=[Thing("polyp", "center", "blue", size)])
        img = draw_scene(scene)
        areas.append(sum(1 for p in img.get_flattened_data() if _close(p, RGB["blue"], 10)))
        assert answers(scene)[Q.Q_POLYP_SIZE] == size
    assert areas == sorted(areas) and areas[0] > 0 and areas[-1] > 4 * areas[0]


def test_procedure_changes_the_scene():
    base = dict(img_id="x", source="Normal", width=288, height=256)
    centres = {p: draw_scene(Scene(**base, procedure=p)).getpixel((144, 200)) for p in Q.PROCEDURES}
    assert len(set(centres.values())) == 3


def test_regenerating_the_default_reproduces_the_hash_in_data_dvc(tmp_path, repo):
    """Same params, same bytes: `dvc add` of a fresh sample records exactly the hash committed in data.dvc."""
    sample = repo_params().sample
    make_sample(tmp_path / "data" / "raw", sample.images, sample.seed)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*dvc, "add", "-q", "data/raw"], cwd=tmp_path, check=True)
    fresh = yaml.safe_load((tmp_path / "data" / "raw.dvc").read_text())["outs"][0]
    committed = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]
    assert committed["path"] == "data/raw"
    assert (fresh["md5"], fresh["nfiles"], fresh["size"]) == (committed["md5"], committed["nfiles"], committed["size"])
