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
