"""The Kvasir-VQA question catalogue: the 19 questions verbatim, their answer types and vocabulary.

One place for facts about the real dataset, so the sample generator, the categorizer's gold labels and
(later) candidate sets and matching all agree. The typo "instrumnets" is in the real data and is kept.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources

QUESTION_TYPES = ("yes_no", "single_choice", "multiple_choice", "colour", "location", "count", "generic")

ABNORMALITIES = ("oesophagitis", "barretts", "short-segment barretts", "ulcerative colitis", "polyp", "hemorrhoids")
LANDMARKS = ("z-line", "ileum", "cecum", "pylorus")
INSTRUMENTS = ("injection needle", "biopsy forceps", "polyp snare", "tube", "metal clip")
POLYP_TYPES = ("paris ip", "paris iia", "paris is")
PROCEDURES = ("colonoscopy", "gastroscopy", "capsule endoscopy")
POLYP_SIZES = ("<5mm", "5-10mm", "11-20mm", ">20mm")
COLOURS = ("pink", "red", "white", "yellow", "orange", "flesh", "black", "blue", "purple", "green", "brown", "grey")
GRID_CELLS = (
    "upper-left", "upper-center", "upper-right",
    "center-left", "center", "center-right",
    "lower-left", "lower-center", "lower-right",
)
SOURCES = ("Polyps", "Ulcerative Colitis", "Esophagitis", "Instrument", "Normal")

# Separators of multi-valued answers: lists use "; ", polyp sizes join without a space.
LIST_SEPARATOR = "; "
SIZE_SEPARATOR = ";"


@dataclass(frozen=True)
class Question:
    """One Kvasir-VQA question: its verbatim text, answer type and hand-labelled clinical stage."""

    text: str
    qtype: str
    gold_stage: int


def _load_catalogue() -> tuple[Question, ...]:
    # The gold stages live in a CSV beside this module so a reviewer can read and change them without code.
    with resources.files("surgvqa.data").joinpath("gold_stages.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return tuple(Question(r["question"], r["qtype"], int(r["gold_stage"])) for r in rows)


QUESTIONS: tuple[Question, ...] = _load_catalogue()
BY_TEXT: dict[str, Question] = {q.text: q for q in QUESTIONS}

# Short names for the questions, used by the sample generator to say which answer it grounds.
Q_POLYPS_REMOVED = "Have all polyps been removed?"
Q_EASY_TO_DETECT = "Is this finding easy to detect?"
Q_BOX_ARTEFACT = "Is there a green/black box artefact?"
Q_TEXT = "Is there text?"
Q_ANY_FINDING = "Does this image contain any finding?"
Q_POLYP_TYPE = "What type of polyp is present?"
Q_PROCEDURE = "What type of procedure is the image taken from?"
Q_POLYP_SIZE = "What is the size of the polyp?"
Q_ABNORMALITIES = "Are there any abnormalities in the image? Check all that are present."
Q_LANDMARKS = "Are there any anatomical landmarks in the image? Check all that are present."
Q_INSTRUMENTS = "Are there any instruments in the image? Check all that are present."
Q_ABNORMALITY_COLOUR = "What color is the abnormality? If more than one separate with ;"
Q_LANDMARK_COLOUR = "What color is the anatomical landmark? If more than one separate with ;"
Q_INSTRUMENT_LOCATION = "Where in the image is the instrument?"
Q_ABNORMALITY_LOCATION = "Where in the image is the abnormality?"
Q_LANDMARK_LOCATION = "Where in the image is the anatomical landmark?"
Q_FINDING_COUNT = "How many findings are present?"
Q_POLYP_COUNT = "How many polyps are in the image?"
Q_INSTRUMENT_COUNT = "How many instrumnets are in the image?"


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


# Other case or spacing, and the typo fixed ("instruments"), still name the same catalogue question.
_BY_KEY: dict[str, Question] = {_key(q.text): q for q in QUESTIONS} | {
    _key(Q_INSTRUMENT_COUNT.replace("instrumnets", "instruments")): BY_TEXT[Q_INSTRUMENT_COUNT]}


def canonical_question(text: str) -> str:
    """The catalogue's verbatim text for a question written with other case, spacing or the typo fixed;
    a question outside the catalogue comes back with its white space collapsed."""
    q = _BY_KEY.get(_key(text))
    return q.text if q else re.sub(r"\s+", " ", text).strip()


def question_type(text: str) -> str:
    """The answer type of a question; questions outside the catalogue are `generic`."""
    q = _BY_KEY.get(_key(text))
    return q.qtype if q else "generic"


def gold_stage(text: str) -> int | None:
    """The hand-labelled stage of a catalogue question, or None for a question outside it."""
    q = _BY_KEY.get(_key(text))
    return q.gold_stage if q else None
