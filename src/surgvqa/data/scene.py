"""What one synthetic endoscopy image shows, and the Kvasir-VQA answers that follow from it.

A Scene is drawn by `sample.py`; every answer here is computed from the same Scene, so each answer is
visible in its picture (location, count, colour, size, type, text overlay, box artefact, procedure).
Randomness comes from `random.Random` seeded per image, which is stable across platforms and Python builds.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from surgvqa.data import questions as Q

CORNER_CELLS = ("upper-left", "upper-right", "lower-left", "lower-right")

# Colours each kind of object may take; a colour name always maps to one RGB value (sample.py), so the
# colour answer is readable from pixels.
POLYP_COLOURS = ("pink", "red", "flesh", "white", "yellow")
ABNORMALITY_COLOURS = {
    "ulcerative colitis": ("red", "white"),
    "oesophagitis": ("red",),
    "barretts": ("orange",),
    "short-segment barretts": ("orange", "brown"),
    "hemorrhoids": ("purple", "blue"),
}
LANDMARK_COLOURS = {"z-line": ("white", "pink"), "pylorus": ("pink", "flesh"),
                    "cecum": ("pink", "yellow"), "ileum": ("flesh", "yellow")}


@dataclass(frozen=True)
class Thing:
    """One drawn object: what it is, the 3x3 grid cell it sits in, its colour name and (polyps) size bin."""

    kind: str
    cell: str
    colour: str = ""
    size: str = ""


@dataclass
class Scene:
    """Everything one synthetic image shows."""

    img_id: str
    source: str
    procedure: str
    width: int
    height: int
    polyps: list[Thing] = field(default_factory=list)
    polyp_type: str = "none"
    abnormalities: list[Thing] = field(default_factory=list)  # other than polyps
    landmarks: list[Thing] = field(default_factory=list)
    instruments: list[Thing] = field(default_factory=list)
    resection_site: str = ""  # cell of a post-polypectomy scar ("all polyps removed"), or ""
    text_overlay: bool = False
    box_artefact: bool = False
    easy_to_detect: bool = True

    @property
    def findings(self) -> list[Thing]:
        """Polyps and other abnormalities: what Kvasir-VQA calls findings."""
        return self.polyps + self.abnormalities


def make_img_id(seed: int, index: int) -> str:
    """An opaque 25-character id in the style of Kvasir-VQA's, stable for (seed, index)."""
    digest = int.from_bytes(hashlib.sha256(f"surgvqa-sample:{seed}:{index}".encode()).digest(), "big")
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    chars = []
    for _ in range(24):
        digest, r = divmod(digest, 36)
        chars.append(alphabet[r])
    return "c" + "".join(chars)


def _take_cells(rng: random.Random, free: list[str], n: int) -> list[str]:
    n = min(n, len(free))
    cells = rng.sample(free, n)
    for c in cells:
        free.remove(c)
    return cells


def sample_scene(seed: int, index: int) -> Scene:
    """Draw the contents of image `index` of the sample with `seed` (independent of how many images there are)."""
    rng = random.Random(f"{seed}:{index}")
    source = rng.choices(Q.SOURCES, weights=(35, 15, 15, 20, 15))[0]
    procedure = {
        "Polyps": rng.choices(("colonoscopy", "capsule endoscopy"), weights=(4, 1))[0],
        "Ulcerative Colitis": "colonoscopy",
        "Esophagitis": "gastroscopy",
        "Instrument": rng.choice(("colonoscopy", "gastroscopy")),
        "Normal": rng.choice(Q.PROCEDURES),
    }[source]
    width, height = rng.choice((256, 288, 320)), rng.choice((224, 256))
    if procedure == "capsule endoscopy":
        width = height  # a round field of view in a square frame: every non-corner cell is fully visible
    s = Scene(img_id=make_img_id(seed, index), source=source, procedure=procedure, width=width, height=height)
    s.box_artefact = procedure != "capsule endoscopy" and rng.random() < 0.35
    s.text_overlay = rng.random() < 0.5
    # The box artefact covers the lower-left cell and the capsule's round field of view hides the corners:
    # nothing is placed where it could not be seen.
    free = [c for c in Q.GRID_CELLS
            if not (s.box_artefact and c == "lower-left")
            and not (procedure == "capsule endoscopy" and c in CORNER_CELLS)]

    if source == "Polyps":
        s.polyp_type = rng.choice(Q.POLYP_TYPES)
        for cell in _take_cells(rng, free, rng.choices((1, 2, 3, 4), weights=(6, 3, 2, 1))[0]):
            s.polyps.append(Thing("polyp", cell, rng.choice(POLYP_COLOURS), rng.choice(Q.POLYP_SIZES)))
        if rng.random() < 0.15:
            s.abnormalities += [Thing("hemorrhoids", c, rng.choice(ABNORMALITY_COLOURS["hemorrhoids"]))
                                for c in _take_cells(rng, free, 1)]
        if rng.random() < 0.2:
            s.instruments += [Thing("polyp snare", c) for c in _take_cells(rng, free, 1)]
    elif source == "Ulcerative Colitis":
        colour = rng.choice(ABNORMALITY_COLOURS["ulcerative colitis"])
        s.abnormalities += [Thing("ulcerative colitis", c, colour) for c in _take_cells(rng, free, rng.randint(1, 3))]
    elif source == "Esophagitis":
        kind = rng.choices(("oesophagitis", "barretts", "short-segment barretts"), weights=(3, 1, 1))[0]
        colour = rng.choice(ABNORMALITY_COLOURS[kind])
        s.abnormalities += [Thing(kind, c, colour) for c in _take_cells(rng, free, rng.randint(1, 2))]
        if rng.random() < 0.5:
            s.landmarks += [Thing("z-line", c, rng.choice(LANDMARK_COLOURS["z-line"]))
                            for c in _take_cells(rng, free, 1)]
    elif source == "Instrument":
        kinds = rng.sample(Q.INSTRUMENTS, rng.choices((1, 2, 3), weights=(5, 3, 1))[0])
        if rng.random() < 0.4:  # after a polypectomy: a clip on the scar, no polyp left
            s.resection_site = _take_cells(rng, free, 1)[0]
            kinds = ["metal clip"] + [k for k in kinds if k != "metal clip"][:1]
        s.instruments += [Thing(k, c) for k, c in zip(kinds, _take_cells(rng, free, len(kinds)))]
    else:  # Normal: a landmark of the procedure's anatomy, sometimes none
        options = {"colonoscopy": ("cecum", "ileum"), "gastroscopy": ("z-line", "pylorus"),
                   "capsule endoscopy": ("ileum",)}[procedure]
        if rng.random() < 0.8:
            kind = rng.choice(options)
            s.landmarks += [Thing(kind, c, rng.choice(LANDMARK_COLOURS[kind])) for c in _take_cells(rng, free, 1)]
    s.easy_to_detect = rng.random() < 0.6
    return s


def _join_sorted(values) -> str:
    return Q.LIST_SEPARATOR.join(sorted(set(values))) or "none"


def _join_in_order(values) -> str:
    # Kvasir-VQA colour lists are not sorted ("red; pink" and "pink; red" both occur): keep drawing order.
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return Q.LIST_SEPARATOR.join(seen) or "none"


def answers(s: Scene) -> dict[str, str]:
    """The answer to each of the 19 questions, read off the scene."""
    findings = s.findings
    if s.polyps:
        removed = "no"
    elif s.resection_site:
        removed = "yes"
    else:
        removed = "not relevant"
    sizes = []
    for p in s.polyps:
        if p.size not in sizes:
            sizes.append(p.size)
    return {
        Q.Q_POLYPS_REMOVED: removed,
        Q.Q_EASY_TO_DETECT: ("yes" if s.easy_to_detect else "no") if findings else "not relevant",
        Q.Q_BOX_ARTEFACT: "yes" if s.box_artefact else "no",
        Q.Q_TEXT: "yes" if s.text_overlay else "no",
        Q.Q_ANY_FINDING: "yes" if findings else "no",
        Q.Q_POLYP_TYPE: s.polyp_type if s.polyps else "none",
        Q.Q_PROCEDURE: s.procedure,
        Q.Q_POLYP_SIZE: Q.SIZE_SEPARATOR.join(sizes) or "none",
        Q.Q_ABNORMALITIES: _join_sorted(f.kind for f in findings),
        Q.Q_LANDMARKS: _join_sorted(t.kind for t in s.landmarks),
        Q.Q_INSTRUMENTS: _join_sorted(t.kind for t in s.instruments),
        Q.Q_ABNORMALITY_COLOUR: _join_in_order(f.colour for f in findings),
        Q.Q_LANDMARK_COLOUR: _join_in_order(t.colour for t in s.landmarks),
        Q.Q_INSTRUMENT_LOCATION: _join_sorted(t.cell for t in s.instruments),
        Q.Q_ABNORMALITY_LOCATION: _join_sorted(f.cell for f in findings),
        Q.Q_LANDMARK_LOCATION: _join_sorted(t.cell for t in s.landmarks),
        Q.Q_FINDING_COUNT: str(len(findings)),
        Q.Q_POLYP_COUNT: str(len(s.polyps)),
        Q.Q_INSTRUMENT_COUNT: str(len(s.instruments)),
    }


def asked_questions(s: Scene, rng: random.Random) -> list[str]:
    """Which questions this image gets: not every question for every image, as in the real data.

    A question about something the image shows is asked more often than the same question answered "none".
    """
    has_polyp, has_finding = bool(s.polyps), bool(s.findings)
    has_landmark, has_instrument = bool(s.landmarks), bool(s.instruments)
    chance = {
        Q.Q_PROCEDURE: 0.85, Q.Q_TEXT: 0.8, Q.Q_BOX_ARTEFACT: 0.75, Q.Q_ANY_FINDING: 0.7, Q.Q_EASY_TO_DETECT: 0.5,
        Q.Q_POLYPS_REMOVED: 0.7 if (has_polyp or s.resection_site) else 0.25,
        Q.Q_POLYP_TYPE: 0.7 if has_polyp else 0.15,
        Q.Q_POLYP_SIZE: 0.7 if has_polyp else 0.15,
        Q.Q_ABNORMALITIES: 0.7 if has_finding else 0.0,
        Q.Q_LANDMARKS: 0.5,
        Q.Q_INSTRUMENTS: 0.6,
        Q.Q_ABNORMALITY_COLOUR: 0.6 if has_finding else 0.15,
        Q.Q_LANDMARK_COLOUR: 0.5 if has_landmark else 0.1,
        Q.Q_INSTRUMENT_LOCATION: 0.6 if has_instrument else 0.1,
        Q.Q_ABNORMALITY_LOCATION: 0.6 if has_finding else 0.15,
        Q.Q_LANDMARK_LOCATION: 0.5 if has_landmark else 0.1,
        Q.Q_FINDING_COUNT: 0.5 if has_finding else 0.0,
        Q.Q_POLYP_COUNT: 0.6 if has_polyp else 0.3,
        Q.Q_INSTRUMENT_COUNT: 0.5 if has_instrument else 0.3,
    }
    return [q.text for q in Q.QUESTIONS if rng.random() < chance[q.text]]
