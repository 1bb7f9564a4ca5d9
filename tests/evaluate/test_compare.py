import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.evaluate.compare import compare, markdown, paired_result
from surgvqa.evaluate.metrics import summarise
from tests.conftest import section

CONFIDENCE = 0.95


def _preds(strict_by_mode: dict[str, list[bool]], majority: list[bool]) -> list[dict]:
    return [{"img_id": f"i{k // 3}", "question": f"q{k % 3}", "mode": mode, "strict": s, "lenient": s,
             "majority": majority[k], "stage": 1 + k % 3, "qtype": "yes_no", "question_text": "",
             "prediction": "yes", "answer": "yes"}
            for mode, flags in strict_by_mode.items() for k, s in enumerate(flags)]


def _report(approach, preds, forgetting=None):
    modes = {m: summarise([p for p in preds if p["mode"] == m], section("evaluate", bootstrap_samples=200))
             for m in ("context", "independent")}
    rep = {"approach": approach, "primary_mode": "context", "confidence": CONFIDENCE, "modes": modes}
    return rep | ({"forgetting": forgetting} if forgetting else {})


def test_paired_results_between_approaches_and_against_the_majority_answer():
    maj = [True, False, False, True, False, True]
    a = _preds({"context": [True, True, True, True, False, False],
                "independent": [True, False, False, True, False, False]}, maj)
    b = _preds({"context": [False, False, False, True, True, False],
                "independent": [False, False, False, True, True, False]}, maj)
    forgetting = {"after_stage_1": {"stage_1": 1.0, "stage_2": 0.0, "stage_3": None}}
    result = compare({"sequential": _report("sequential", a), "curriculum": _report("curriculum", b, forgetting)},
                     {"sequential": a, "curriculum": b}, CONFIDENCE)
    ab = result["paired"]["context"]["sequential vs curriculum"]
    assert (ab["wins"], ab["ties_both_right"], ab["ties_both_wrong"], ab["losses"]) == (3, 1, 1, 1)
    assert ab["p_value"] == pytest.approx(0.625)  # 3 vs 1 discordant: 2 * P(X <= 1 | 4) = 2 * 5/16
    vs_maj = result["paired"]["context"]["sequential vs majority answer"]
    assert (vs_maj["wins"], vs_maj["losses"]) == (2, 1)
    independent = result["paired"]["independent"]["sequential vs curriculum"]
    assert (independent["wins"], independent["losses"]) == (1, 1)
    ctx = result["context_vs_independent"]["sequential"]
    assert (ctx["wins"], ctx["losses"]) == (2, 0)
    assert result["approaches"]["sequential"]["overall"]["strict"] == pytest.approx(4 / 6)
    text = markdown(result, {"sequential": _report("sequential", a), "curriculum": _report("curriculum", b)})
    assert "| sequential vs curriculum | 3 | 2 | 1 | 0.625 | 1 |" in text and "independent mode" in text
    assert ab["p_holm"] == 1.0  # 0.625 against 3 tests: min(1, 0.625 * k) with k >= 2
    assert "| majority answer per question | 0.500" in text and "| after stage 1 | 1.000 | 0.000 | n/a |" in text


def test_a_paired_test_refuses_different_items():
    with pytest.raises(SurgvqaError, match="same items"):
        paired_result({("i", "q"): True}, {("j", "q"): True})


def test_compare_takes_its_confidence_from_params_and_refuses_reports_at_another():
    a = _preds({"context": [True, False] * 3, "independent": [True] * 6}, [True] * 6)
    reports = {"sequential": _report("sequential", a), "curriculum": _report("curriculum", a)}
    predictions = {"sequential": a, "curriculum": a}
    result = compare(reports, predictions, CONFIDENCE)
    assert result["confidence"] == CONFIDENCE and "with 95% bootstrap" in markdown(result, reports)
    with pytest.raises(SurgvqaError, match="another confidence than evaluate.confidence 0.9"):
        compare(reports, predictions, 0.9)
    reports["curriculum"] = {k: v for k, v in reports["curriculum"].items() if k != "confidence"}
    with pytest.raises(SurgvqaError, match="curriculum"):  # a report that does not say is no match either
        compare(reports, predictions, CONFIDENCE)


def test_a_chart_is_replaced_whole_or_not_at_all(tmp_path):
    from surgvqa.evaluate.plots import forgetting_heatmap

    matrix = {"after_stage_1": {"stage_1": 0.5, "stage_2": None}}
    # savefig refuses an unknown format once the figure is drawn: the previous file stays, no partial file is left
    previous = tmp_path / "forgetting.nope"
    previous.write_bytes(b"the previous chart")
    with pytest.raises(ValueError, match="not supported"):
        forgetting_heatmap(matrix, previous)
    assert previous.read_bytes() == b"the previous chart" and [p.name for p in tmp_path.iterdir()] == [previous.name]
    chart = tmp_path / "forgetting.png"
    forgetting_heatmap(matrix, chart)
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == [previous.name, chart.name]
