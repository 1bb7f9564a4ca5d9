from surgvqa.evaluate.match import strict_match
from surgvqa.evaluate.versus_majority import majority_answers


def test_majority_answer_per_question_with_a_stable_tie_break():
    rows = [{"question": "a", "answer": x} for x in ("no", "yes", "yes")] + \
           [{"question": "b", "answer": x} for x in ("2", "1")]
    assert majority_answers(rows) == {"a": "yes", "b": "1"}


def test_strict_match_compares_values_as_sets_and_keeps_none_a_value():
    assert strict_match("pink; red", "red; pink") and strict_match(" Yes ", "yes")
    assert not strict_match("red", "red; pink") and not strict_match("none", "red")
    assert not strict_match("no", "not relevant") and not strict_match("", "none")
