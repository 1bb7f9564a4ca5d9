import pytest

from surgvqa.data.questions import Q_INSTRUMENT_COUNT, question_type
from surgvqa.evaluate import match
from surgvqa.evaluate.match import atoms, quantity
from tests.conftest import section

THRESHOLD = section("evaluate").lenient_threshold


def strict_match(prediction, answer, tolerance=0.0):
    return match.strict_match(prediction, answer, tolerance)


def lenient_match(prediction, answer, threshold=THRESHOLD):
    return match.lenient_match(prediction, answer, threshold, 0.0)


def test_multi_valued_answers_compare_as_sets_with_either_separator():
    assert strict_match("pink; red", "red; pink") and strict_match("red;pink", "pink; red")
    assert strict_match("5-10mm;<5mm", "<5mm; 5-10mm") and strict_match(" Yes. ", "yes")
    assert strict_match("red; red", "red")  # a repeated value states nothing new
    assert not strict_match("red", "red; pink") and not strict_match("red; pink; white", "red; pink")


def test_numbers_compare_as_numbers_with_tolerance_and_units():
    assert strict_match("3", "3") and strict_match("3.0", "3") and strict_match("three", "3")
    assert not strict_match("4", "3") and strict_match("4", "3", tolerance=1) and not strict_match("5", "3", 1)
    assert strict_match("5 - 10 mm", "5-10mm") and strict_match("< 5 mm", "<5mm") and strict_match("1cm", "10mm")
    assert not strict_match("5mm", "<5mm") and not strict_match("5", "5mm")  # bound and unit are part of a size
    assert not strict_match("11-20mm", "5-10mm") and strict_match("11-20mm", "10-20mm", tolerance=1)
    assert quantity("polyp") is None and quantity(">20mm") == (">", 20.0, 20.0, True)
    # Pairing is a matching, not greedy: 4~3 and 2~... fails, but 4~5 and 2~3 succeeds (any value order).
    assert strict_match("4; 2", "3; 5", tolerance=1) and strict_match("2; 4", "5; 3", tolerance=1)
    assert not strict_match("4; 4.5", "3; 9", tolerance=1)


def test_none_is_a_value_not_a_wildcard():
    assert strict_match("none", "none") and strict_match("None", "none")
    assert not strict_match("none", "polyp") and not strict_match("polyp", "none")
    assert not strict_match("none; polyp", "polyp") and not strict_match("", "none")
    assert not strict_match("", "") and atoms(" ; ;") == []  # an empty prediction is never right


def test_not_relevant_is_strict_but_lenient_lets_no_through():
    assert not strict_match("no", "not relevant") and strict_match("Not relevant", "not relevant")
    assert lenient_match("no", "not relevant")  # substring: the leniency published numbers used
    assert lenient_match("polyps", "polyp") and lenient_match("ulcerative colitis", "ulcerative colitis; polyp")
    assert lenient_match("colonscopy", "colonoscopy")  # similarity >= 0.7
    assert not lenient_match("colonoscopy", "gastroscopy", threshold=0.9) and not lenient_match("", "none")
    assert not lenient_match("red", "pink") and not lenient_match("polyp", "")


@pytest.mark.parametrize("question", [Q_INSTRUMENT_COUNT, "how many  instrumnets are in the image?",
                                      "How many instruments are in the image?",
                                      " How many instrumnets are in the image? "])
def test_the_real_typo_and_its_fix_are_the_same_count_question(question):
    assert question_type(question) == "count"
