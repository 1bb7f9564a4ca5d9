from surgvqa.data import questions as Q


def test_catalogue_holds_the_19_real_questions_verbatim():
    assert len(Q.QUESTIONS) == 19
    assert len(Q.BY_TEXT) == 19
    # The real data's typo is kept: matching the real questions matters more than spelling.
    assert "How many instrumnets are in the image?" in Q.BY_TEXT
    assert "How many instruments are in the image?" not in Q.BY_TEXT


def test_types_and_gold_stages_are_valid():
    counts = {}
    for q in Q.QUESTIONS:
        assert q.qtype in Q.QUESTION_TYPES and q.qtype != "generic"
        assert q.gold_stage in (1, 2, 3)
        counts[q.qtype] = counts.get(q.qtype, 0) + 1
    assert counts == {"yes_no": 5, "single_choice": 3, "multiple_choice": 3, "colour": 2, "location": 3, "count": 3}
    assert Q.gold_stage("Have all polyps been removed?") == 3
    assert Q.gold_stage("What type of procedure is the image taken from?") == 1


def test_unknown_question_is_generic_without_gold():
    assert Q.question_type("Is the bowel preparation adequate?") == "generic"
    assert Q.gold_stage("Is the bowel preparation adequate?") is None
