"""Routing follows the categorizer, never the stage column of the file being evaluated."""

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.infer.routing import read_stage_table, route
from tests.conftest import section


def test_route_uses_the_categorizer_table_and_categorizes_unseen_questions(tmp_path):
    table = tmp_path / "question_stages.csv"
    table.write_text("question,stage,gold_stage,parsed,raw_reply\nIs there text?,2,1,True,\n", encoding="utf-8")
    stages = route(["Is there text?", "Have all polyps been removed?", "Is there text?"], read_stage_table(table),
                   section("categorize"))
    # The table's (deliberately odd) 2 wins over the gold 1; the unseen question goes through keyword rules.
    assert stages == {"Is there text?": 2, "Have all polyps been removed?": 3}
    with pytest.raises(SurgvqaError, match="dvc repro categorize"):
        read_stage_table(tmp_path / "missing.csv")


def test_an_unseen_question_whose_llm_reply_names_no_stage_fails_routing(tmp_path):
    import dataclasses

    from tests.tiny_models import build_tiny_causal_lm

    model_dir = build_tiny_causal_lm(tmp_path / "no-digits", ["Is the scope clean?"], digits=False)
    categorize = section("categorize")
    llm = dataclasses.replace(categorize.llm, model=str(model_dir), max_new_tokens=3, max_unparsed_fraction=0.0)
    with pytest.raises(SurgvqaError, match="1 of 1 LLM replies name no stage .* missing from question_stages.csv"):
        route(["Is the scope clean?"], {}, dataclasses.replace(categorize, backend="llm", llm=llm))
