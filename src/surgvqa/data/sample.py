"""The embedded default data: a grounded synthetic sample in the real Kvasir-VQA layout.

`make_sample` draws each Scene (scene.py) and writes `metadata.csv` + `images/<img_id>.jpg`. Same arguments,
same bytes: the JPEG encoder and the font ship inside the pinned Pillow wheel, and all randomness is seeded per
image, so regenerating the default reproduces the hash recorded in `data.dvc`.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from surgvqa.data import raw
from surgvqa.data.scene import Scene, Thing, answers, asked_questions, sample_scene
from surgvqa.errors import SurgvqaError
from surgvqa.params.sample import SampleParams

RGB = {
    "pink": (255, 150, 185), "red": (200, 20, 30), "white": (245, 245, 240), "yellow": (240, 215, 40),
    "orange": (245, 130, 20), "flesh": (235, 190, 150), "black": (10, 10, 10), "blue": (40, 70, 210),
    "purple": (120, 40, 150), "green": (40, 170, 60), "brown": (120, 70, 30), "grey": (140, 140, 145),
}
BACKGROUND = {"colonoscopy": (190, 105, 80), "gastroscopy": (215, 140, 125), "capsule endoscopy": (175, 140, 70)}
METAL = (175, 178, 185)
OUTLINE = (40, 15, 10)
POLYP_RADIUS = {"<5mm": 0.045, "5-10mm": 0.07, "11-20mm": 0.1, ">20mm": 0.135}  # share of the shorter side
ROWS = {"upper": 0, "center": 1, "lower": 2}
COLS = {"left": 0, "center": 1, "right": 2}


def cell_box(cell: str, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a 3x3 grid cell such as "upper-left" or "center"."""
    row, col = ("center", "center") if cell == "center" else cell.split("-")
    r, c = ROWS[row], COLS[col]
    return c * width / 3, r * height / 3, (c + 1) * width / 3, (r + 1) * height / 3


def _centre(cell: str, s: Scene) -> tuple[float, float]:
    x0, y0, x1, y1 = cell_box(cell, s.width, s.height)
    return (x0 + x1) / 2, (y0 + y1) / 2


def _shade(colour: tuple[int, int, int], s: Scene, subtle: bool) -> tuple[int, int, int]:
    # A finding that is "not easy to detect" is drawn half-blended into the mucosa and without an outline.
    if not subtle:
        return colour
    bg = BACKGROUND[s.procedure]
    return tuple(round(0.45 * c + 0.55 * b) for c, b in zip(colour, bg))


def _draw_background(d: ImageDraw.ImageDraw, s: Scene, rng: random.Random) -> None:
    w, h = s.width, s.height
    d.rectangle((0, 0, w, h), fill=BACKGROUND[s.procedure])
    # Folds (colon haustra or gastric rugae) and vessels: texture that carries no answer.
    fold = tuple(min(255, c + 25) for c in BACKGROUND[s.procedure])
    for _ in range(4):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 0.7) * max(w, h)
        d.arc((x - r, y - r, x + r, y + r), rng.uniform(0, 360), rng.uniform(0, 360) + 90, fill=fold, width=3)
    vessel = tuple(max(0, c - 45) for c in BACKGROUND[s.procedure])
    for _ in range(6):
        pts = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(3)]
        d.line(pts, fill=vessel, width=1)


def _capsule_field_of_view(img: Image.Image) -> None:
    """Capsule endoscopy: a round field of view, black outside it."""
    w, h = img.size
    outside = Image.new("L", (w, h), 255)
    r = min(w, h) / 2 - 2
    ImageDraw.Draw(outside).ellipse((w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r), fill=0)
    img.paste(RGB["black"], (0, 0, w, h), outside)


def _draw_polyp(d: ImageDraw.ImageDraw, p: Thing, s: Scene, polyp_type: str) -> None:
    cx, cy = _centre(p.cell, s)
    r = POLYP_RADIUS[p.size] * min(s.width, s.height)
    fill = _shade(RGB[p.colour], s, not s.easy_to_detect)
    outline = None if not s.easy_to_detect else OUTLINE
    if polyp_type == "paris ip":  # pedunculated: a head on a stalk
        d.line((cx, cy, cx, cy + 1.1 * r), fill=fill, width=max(2, int(r / 2.5)))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=2)
    elif polyp_type == "paris iia":  # flat: a wide, low plaque
        d.ellipse((cx - 1.4 * r, cy - 0.55 * r, cx + 1.4 * r, cy + 0.55 * r), fill=fill, outline=outline, width=2)
    else:  # paris is, sessile: a round dome with a light reflex
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=2)
        d.ellipse((cx - r / 3, cy - r / 2, cx, cy - r / 4), fill=RGB["white"])


def _draw_abnormality(d: ImageDraw.ImageDraw, a: Thing, s: Scene, rng: random.Random) -> None:
    cx, cy = _centre(a.cell, s)
    u = min(s.width, s.height) / 9  # a third of a cell
    fill = _shade(RGB[a.colour], s, not s.easy_to_detect)
    if a.kind == "oesophagitis":  # red streaks radiating from the cell centre
        for k in range(5):
            dx, dy = (k - 2) * u * 0.45, u * (1 if k % 2 else -1)
            d.line((cx, cy, cx + dx, cy + dy), fill=fill, width=4)
    elif a.kind in ("barretts", "short-segment barretts"):  # a salmon tongue; shorter for short-segment
        length = u * (1.3 if a.kind == "barretts" else 0.7)
        d.polygon([(cx - u, cy + u), (cx + u, cy + u), (cx + 0.3 * u, cy - length), (cx - 0.3 * u, cy - length)],
                  fill=fill)
    elif a.kind == "hemorrhoids":  # a cluster of three bluish cushions
        for dx, dy in ((-0.6, 0.3), (0.6, 0.3), (0, -0.5)):
            d.ellipse((cx + dx * u - 0.5 * u, cy + dy * u - 0.5 * u, cx + dx * u + 0.5 * u, cy + dy * u + 0.5 * u),
                      fill=fill)
    else:  # ulcerative colitis: an irregular inflamed patch
        pts = [(cx + u * rng.uniform(0.8, 1.3) * c, cy + u * rng.uniform(0.8, 1.3) * t)
               for c, t in ((1, 0), (0.7, 0.7), (0, 1), (-0.7, 0.7), (-1, 0), (-0.7, -0.7), (0, -1), (0.7, -0.7))]
        d.polygon(pts, fill=fill)
    if s.easy_to_detect:
        d.rectangle((cx - 1, cy - 1, cx + 1, cy + 1), fill=OUTLINE)


def _draw_landmark(d: ImageDraw.ImageDraw, t: Thing, s: Scene) -> None:
    cx, cy = _centre(t.cell, s)
    u = min(s.width, s.height) / 9
    colour = RGB[t.colour]
    if t.kind == "z-line":  # a jagged boundary
        pts = [(cx - 1.3 * u + k * 0.65 * u, cy + (0.4 * u if k % 2 else -0.4 * u)) for k in range(5)]
        d.line(pts, fill=colour, width=5)
    elif t.kind == "pylorus":  # a ring around a dark opening
        d.ellipse((cx - u, cy - u, cx + u, cy + u), fill=colour)
        d.ellipse((cx - 0.4 * u, cy - 0.4 * u, cx + 0.4 * u, cy + 0.4 * u), fill=(40, 10, 10))
    elif t.kind == "cecum":  # three folds meeting (the "Mercedes" sign)
        for ex, ey in ((0, -1.2), (1.1, 0.7), (-1.1, 0.7)):
            d.line((cx, cy, cx + ex * u, cy + ey * u), fill=colour, width=6)
    else:  # ileum: a villous patch of dots
        for i in range(-2, 3):
            for j in range(-2, 3):
                x, y = cx + i * 0.45 * u, cy + j * 0.45 * u
                d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)


def _draw_instrument(d: ImageDraw.ImageDraw, t: Thing, s: Scene) -> None:
    cx, cy = _centre(t.cell, s)
    u = min(s.width, s.height) / 9
    if t.kind == "biopsy forceps":  # a rod ending in two open jaws
        d.line((cx - 1.3 * u, cy + 1.2 * u, cx, cy), fill=METAL, width=5)
        d.line((cx, cy, cx + 0.7 * u, cy - 0.2 * u), fill=METAL, width=4)
        d.line((cx, cy, cx + 0.2 * u, cy - 0.7 * u), fill=METAL, width=4)
    elif t.kind == "polyp snare":  # a wire loop on a sheath
        d.line((cx - 1.3 * u, cy + 1.2 * u, cx - 0.3 * u, cy + 0.3 * u), fill=RGB["blue"], width=4)
        d.ellipse((cx - 0.5 * u, cy - 0.9 * u, cx + 0.9 * u, cy + 0.4 * u), outline=METAL, width=2)
    elif t.kind == "injection needle":  # a blue sheath and a thin needle
        d.line((cx - 1.3 * u, cy + 1.2 * u, cx, cy), fill=RGB["blue"], width=5)
        d.line((cx, cy, cx + 0.8 * u, cy - 0.75 * u), fill=RGB["white"], width=1)
    elif t.kind == "tube":  # a thick translucent tube
        d.line((cx - 1.4 * u, cy + 0.4 * u, cx + 1.4 * u, cy - 0.4 * u), fill=(225, 225, 215), width=12)
    else:  # metal clip: a small V
        d.line((cx - 0.5 * u, cy - 0.6 * u, cx, cy + 0.4 * u, cx + 0.5 * u, cy - 0.6 * u), fill=METAL, width=4)


def draw_scene(s: Scene) -> Image.Image:
    """Render a scene; the pixel content is a pure function of the scene."""
    rng = random.Random(s.img_id)
    img = Image.new("RGB", (s.width, s.height))
    d = ImageDraw.Draw(img)
    _draw_background(d, s, rng)
    if s.resection_site:  # a white scar with a blue dye margin
        cx, cy = _centre(s.resection_site, s)
        u = min(s.width, s.height) / 9
        d.ellipse((cx - u, cy - 0.7 * u, cx + u, cy + 0.7 * u), fill=RGB["white"], outline=RGB["blue"], width=4)
    for t in s.landmarks:
        _draw_landmark(d, t, s)
    for p in s.polyps:
        _draw_polyp(d, p, s, s.polyp_type)
    for a in s.abnormalities:
        _draw_abnormality(d, a, s, rng)
    for t in s.instruments:
        _draw_instrument(d, t, s)
    if s.procedure == "capsule endoscopy":
        _capsule_field_of_view(img)
    if s.box_artefact:  # the scope-position box of Kvasir images: black with a green frame, lower left
        w, h = s.width, s.height
        d.rectangle((2, h - h / 3 + 4, w / 3 - 4, h - 3), fill=RGB["black"], outline=RGB["green"], width=3)
    if s.text_overlay:
        font = ImageFont.load_default(size=11)
        d.text((4, 2), f"ENDO {rng.randint(1, 9)}  {rng.randint(10, 28)}/0{rng.randint(1, 9)}/2019", fill=RGB["white"],
               font=font)
    return img


def make_sample(out_dir: Path, images: int, seed: int) -> dict:
    """Write a sample of `images` images into `out_dir` in the raw layout; returns counts for the log."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        # It may hold a real imported dataset: never delete data to make room for synthetic data.
        raise SurgvqaError(f"{out_dir} is not empty: remove it first or pass another --out")
    (out_dir / "images").mkdir(parents=True)
    rows = 0
    with (out_dir / raw.METADATA).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(raw.COLUMNS)
        for i in tqdm(range(images), desc="sample", unit="img"):
            scene = sample_scene(seed, i)
            draw_scene(scene).save(out_dir / "images" / f"{scene.img_id}.jpg", format="JPEG", quality=90)
            truth = answers(scene)
            for q in asked_questions(scene, random.Random(f"{seed}:{i}:questions")):
                writer.writerow((scene.source, q, truth[q], scene.img_id))
                rows += 1
    return {"images": images, "rows": rows, "seed": seed}


def run(out_dir: Path, images: int | None, seed: int | None, sample: SampleParams) -> dict:
    """`surgvqa data sample` and `data ensure`: the sample, its size and seed from the `sample` section unless given."""
    return make_sample(out_dir, images=sample.images if images is None else images,
                       seed=sample.seed if seed is None else seed)
