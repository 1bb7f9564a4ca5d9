from surgvqa.data.questions import Q_ABNORMALITY_COLOUR, Q_TEXT
from surgvqa.model.prompts import answer_atoms, candidate_sets, render_prompt
from tests.conftest import section


def test_candidates_come_from_training_rows_as_single_values():
    rows = [{"question": Q_TEXT, "answer": "yes"}, {"question": Q_TEXT, "answer": "no"},
            {"question": Q_ABNORMALITY_COLOUR, "answer": "red; pink"}, {"question": "Free text?", "answer": "x"}]
    assert candidate_sets(rows) == {Q_ABNORMALITY_COLOUR: ["pink", "red"], Q_TEXT: ["no", "yes"]}
    assert answer_atoms("5-10mm;<5mm") == ["5-10mm", "<5mm"]


def test_prompt_names_type_and_valid_answers_and_open_questions_get_none():
    cands = {Q_TEXT: ["no", "yes"]}
    text = render_prompt(Q_TEXT, cands, section("prompt"))
    assert text == "Is there text?\nQuestion type: yes/no.\nValid answers: no, yes.\nAnswer with the answer only."
    assert "Valid answers" not in render_prompt("What is shown?", cands, section("prompt"))
    assert "Question type: open." in render_prompt("What is shown?", cands, section("prompt"))
