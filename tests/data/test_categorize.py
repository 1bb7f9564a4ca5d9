import csv
import dataclasses
import json

import pytest

from surgvqa.data import questions as Q
from surgvqa.data.categorize import agreement_report, assign_stages, keyword_stage, run, to_inline
from surgvqa.data.llm_categorizer import parse_stage
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_jsonl
from tests.conftest import section
from tests.data.file_access import file_access, strays
from tests.tiny_models import build_tiny_causal_lm


def _llm(model_dir, **changes):
    """The repo's categorize section switched to the LLM backend on a local model."""
    categorize = section("categorize")
    llm = dataclasses.replace(categorize.llm, model=str(model_dir), **changes)
    return dataclasses.replace(categorize, backend="llm", llm=llm)


def test_keyword_backend_agrees_with_every_gold_label():
    stages = assign_stages([q.text for q in Q.QUESTIONS], section("categorize", backend="keyword"))
    report = agreement_report(stages, [{"question": q.text} for q in Q.QUESTIONS], "keyword")
    assert report["gold_agreement"] == 1.0 and report["gold_disagreements"] == []
    assert report["unparsed_replies"] == 0


@pytest.mark.parametrize("question, stage", [
    ("What is the diagnosis?", 3),
    ("What treatment is recommended?", 3),
    ("Is there any text visible in the image?", 1),
    ("What is the image quality?", 1),
    ("Is the texture of the mucosa granular?", 2),  # "texture" is not "text"
    ("Where is the polyp located?", 2),
])
def test_keyword_rules_place_unseen_questions(question, stage):
    assert keyword_stage(question) == stage


def test_inline_format_orders_lines_by_stage_and_pairs_answers():
    rows = [
        {"img_id": "a", "image": "images/a.jpg", "source": "Polyps", "question": "Have all polyps been removed?",
         "answer": "no"},
        {"img_id": "a", "image": "images/a.jpg", "source": "Polyps", "question": "How many polyps are in the image?",
         "answer": "2"},
        {"img_id": "a", "image": "images/a.jpg", "source": "Polyps", "question": "Is there text?", "answer": "yes"},
        {"img_id": "b", "image": "images/b.jpg", "source": "Normal", "question": "Is there text?", "answer": "no"},
    ]
    stage_of = {r["question"]: keyword_stage(r["question"]) for r in rows}
    a, b = to_inline(rows, stage_of)
    assert a == {"image": "images/a.jpg", "img_id": "a", "source": "Polyps",
                 "instruction": "Stage-1: Is there text?\nStage-2: How many polyps are in the image?\n"
                                "Stage-3: Have all polyps been removed?",
                 "target": "yes\n2\nno"}
    assert b["instruction"] == "Stage-1: Is there text?" and b["target"] == "no"


@pytest.mark.parametrize("reply, expected", [
    ("Stage: 3", (3, True)),
    ("Stage:2 because it is about findings", (2, True)),
    ("I would say stage 1.", (1, True)),
    ("Stage: 7, or maybe 3", (3, True)),
    ("cannot tell", (2, False)),
    ("", (2, False)),
])
def test_parse_then_fallback_then_default_counted_as_unparsed(reply, expected):
    assert parse_stage(reply) == expected


def test_llm_backend_calls_the_model_once_per_unique_question(tmp_path, monkeypatch):
    from transformers.generation.utils import GenerationMixin

    unique = [q.text for q in Q.QUESTIONS[:5]]
    rows = [{"img_id": f"i{k}", "image": f"images/i{k}.jpg", "source": "Polyps", "question": unique[k % 5],
             "answer": "yes"} for k in range(40)]
    model_dir = build_tiny_causal_lm(tmp_path / "tiny-lm", unique)
    prompts_seen: list[int] = []
    real_generate = GenerationMixin.generate

    def counting_generate(self, *args, **kwargs):
        prompts_seen.append(kwargs["input_ids"].shape[0])
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", counting_generate)
    # Random replies may or may not name a stage; this test is about batching, so any share is allowed.
    params = _llm(model_dir, batch_size=2, max_new_tokens=4, max_unparsed_fraction=1.0)
    write_jsonl(tmp_path / "qa.jsonl", rows)
    report = run(tmp_path / "qa.jsonl", tmp_path / "out", tmp_path / "report.json", params)

    assert prompts_seen == [2, 2, 1]  # 5 unique questions among 40 rows, batches of 2: one prompt each
    with (tmp_path / "out" / "question_stages.csv").open(encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["question"] for t in table] == unique
    for t in table:  # the raw reply is kept and the stage is what the parser makes of it
        stage, parsed = parse_stage(t["raw_reply"])
        assert (int(t["stage"]), t["parsed"] == "True") == (stage, parsed)
    assert report["unparsed_replies"] == sum(1 for t in table if t["parsed"] == "False")
    assert report["backend"] == "llm" and report["gold_questions"] == 5
    assert len(read_jsonl(tmp_path / "out" / "inline.jsonl")) == 40


def test_llm_replies_that_name_no_stage_fail_the_stage_beyond_the_params_share(tmp_path):
    unique = [q.text for q in Q.QUESTIONS[:4]]
    rows = [{"img_id": f"i{k}", "image": f"images/i{k}.jpg", "source": "Polyps", "question": unique[k % 4],
             "answer": "yes"} for k in range(8)]
    write_jsonl(tmp_path / "qa.jsonl", rows)
    # A model whose vocabulary has no digits cannot name a stage: every reply is unparsed.
    model_dir = build_tiny_causal_lm(tmp_path / "no-digits", unique, digits=False)
    with pytest.raises(SurgvqaError, match=r"4 of 4 LLM replies name no stage \(above categorize.llm"):
        run(tmp_path / "qa.jsonl", tmp_path / "out", tmp_path / "report.json",
            _llm(model_dir, max_new_tokens=3, max_unparsed_fraction=0.5))
    report = json.loads((tmp_path / "report.json").read_text())  # written before failing, for inspection
    assert report["unparsed_replies"] == 4 and report["max_unparsed_fraction"] == 0.5
    with (tmp_path / "out" / "question_stages.csv").open(encoding="utf-8", newline="") as f:
        assert [r["parsed"] for r in csv.DictReader(f)] == ["False"] * 4
    # Within the share the stage passes, and the fallback stage is counted, not hidden.
    passed = run(tmp_path / "qa.jsonl", tmp_path / "out2", tmp_path / "report2.json",
                 _llm(model_dir, max_new_tokens=3, max_unparsed_fraction=1.0))
    assert passed["unparsed_replies"] == 4 and passed["rows_per_stage"]["stage_2"] == 8


def _qa(img, question="Is there text?", answer="no", **change):
    return {"img_id": img, "image": f"images/{img}.jpg", "source": "Polyps", "question": question, "answer": answer,
            **change}


@pytest.mark.parametrize("record, reason", [
    (_qa("b", question="  "), "missing_question"),
    (_qa("b", answer="nan"), "missing_answer"),
    (_qa("b", question="Is there\ttext?"), "control_character"),
    (_qa("b", answer="yes\nno"), "control_character"),
    (_qa("b", image="/etc/hostname"), "bad_image_path"),
    (_qa("b", img_id="../b", image="images/../b.jpg"), "unsafe_img_id"),
    ({"img_id": "b", "image": "images/b.jpg", "question": "Is there text?", "answer": "no"}, "missing_field"),
])
def test_a_record_ingest_would_have_quarantined_is_refused_naming_file_line_and_reason(tmp_path, record, reason):
    data = tmp_path / "data"
    write_jsonl(data / "qa.jsonl", [_qa("a"), _qa("a", question="How many polyps are in the image?", answer="1"),
                                    record])
    params = section("categorize", backend="keyword")
    with file_access() as access, pytest.raises(SurgvqaError) as e:
        run(data / "qa.jsonl", data / "out", data / "report.json", params)
    assert str(e.value).startswith(f"categorize: 1 of 3 records in {data / 'qa.jsonl'} cannot be used "
                                   f"{{'{reason}': 1}}: {data / 'qa.jsonl'}:3 (img_id ")
    assert not (data / "out").exists(), "nothing but the report is written from bad input"
    report = json.loads((data / "report.json").read_text())
    assert (report["records_total"], report["records_refused"], report["refused_by_reason"]) == (3, 1, {reason: 1})
    assert report["refused"][0]["line"] == 3 and report["refused"][0]["reason"] == reason
    assert access and strays(access, data) == []


def test_a_refused_record_is_named_by_its_line_counting_blank_lines(tmp_path):
    path = tmp_path / "qa.jsonl"  # hand-edited: a blank line before the bad record, the 2nd record on line 3
    path.write_text(json.dumps(_qa("a")) + "\n\n" + json.dumps(_qa("b", answer="nan")) + "\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f": {path}:3 \\(img_id 'b'\\): missing_answer"):
        run(path, tmp_path / "out", tmp_path / "r.json", section("categorize", backend="keyword"))
    assert json.loads((tmp_path / "r.json").read_text())["refused"][0]["line"] == 3


def test_a_json_line_that_is_not_an_object_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(_qa("a")) + "\n" + "42\n", encoding="utf-8")
    with pytest.raises(SurgvqaError, match=f"^{path}:2: expected a JSON object, got int$"):
        run(path, tmp_path / "out", tmp_path / "r.json", section("categorize", backend="keyword"))
    assert not (tmp_path / "out").exists()
