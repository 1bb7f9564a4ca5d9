import itertools

import pytest

from surgvqa.evaluate.metrics import majority_answers, summarise
from tests.conftest import section

_IMAGES = itertools.count()


def _row(stage, qtype, question, strict, lenient, majority, prediction="x", answer="x"):
    return {"img_id": f"img{next(_IMAGES)}", "stage": stage, "qtype": qtype, "question": question, "strict": strict,
            "lenient": lenient,
            "majority": majority, "prediction": prediction, "answer": answer}


def test_majority_answer_per_question_with_a_stable_tie_break():
    rows = [{"question": "Is there text?", "answer": x} for x in ("no", "yes", "yes")] + \
           [{"question": "b", "answer": x} for x in ("2", "1")] + [{"question": "is there  TEXT?", "answer": "yes"}]
    assert majority_answers(rows) == {"Is there text?": "yes", "b": "1"}


def test_summary_by_stage_type_and_question_with_majority_on_the_same_items():
    rows = [_row(1, "yes_no", "q1", True, True, True), _row(1, "yes_no", "q1", False, True, True),
            _row(2, "count", "q2", True, True, False), _row(2, "count", "q2", False, False, False),
            _row(2, "multiple_choice", "q3", False, True, False, "polyp; none", "polyp"),
            _row(3, "yes_no", "q4", True, True, True)]
    s = summarise(rows, section("evaluate", bootstrap_samples=200))
    assert (s["overall"]["n"], s["overall"]["strict"], s["overall"]["lenient"], s["overall"]["majority"]) == \
        (6, 0.5, pytest.approx(5 / 6), 0.5)
    assert s["stage"]["1"]["strict"] == 0.5 and s["stage"]["2"]["strict"] == pytest.approx(1 / 3)
    assert s["stage"]["3"]["strict_ci"] == [1.0, 1.0] and s["stage"]["2"]["majority"] == 0.0
    assert s["qtype"]["yes_no"]["n"] == 3 and s["question"]["q2"]["strict"] == 0.5
    lo, hi = s["overall"]["strict_ci"]
    assert lo < 0.5 < hi
    want = {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "n": 1}
    assert s["multiple_choice_labels"] == {"all": want, "question": {"q3": want}}
