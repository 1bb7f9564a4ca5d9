"""The engine: routing to stage adapters, context passing, and agreement with the straightforward reference."""

from dataclasses import replace
from pathlib import Path

import pytest

from surgvqa.infer import engine
from surgvqa.infer.engine import AdapterModels, Answerer, Item, answer_items, context_prompt
from tests.conftest import section

Q1, Q1B, Q2, Q3 = ("Is there text?", "What type of procedure is the image taken from?",
                   "How many polyps are in the image?", "Have all polyps been removed?")


class _Recorder:
    """A stand-in model: remembers the active adapter; generate_batch is patched to answer from here."""

    def __init__(self):
        self.active, self.calls = None, []

    def set_adapter(self, name):
        self.active = name


@pytest.fixture
def recorder(monkeypatch):
    rec = _Recorder()

    def fake_generate(model, processor, prompts, system, max_new_tokens, cache=None):
        out = []
        for image, prompt in prompts:
            rec.calls.append((model.active, image.name, prompt))
            out.append(f"{image.stem}:{prompt.splitlines()[-1][:12]}")
        return out

    monkeypatch.setattr(engine, "generate_batch", fake_generate)
    return rec


def _items():
    a, b = Path("a.jpg"), Path("b.jpg")
    return [Item("b", b, Q3, 3), Item("a", a, Q2, 2), Item("a", a, Q1, 1), Item("b", b, Q1, 1),
            Item("a", a, Q3, 3), Item("a", a, Q1B, 1)]


def test_each_stage_goes_to_its_adapter_and_sees_only_its_images_earlier_answers(recorder):
    eval_params = section("evaluate", decoding="free")
    prompt_params = section("prompt", template="{question}", candidates_template="{candidates}")
    answerer = Answerer(AdapterModels(recorder), None, {}, {}, {})
    preds = answer_items(answerer, _items(), {1: "s1", 2: "s2", 3: "s3"}, "context", eval_params, prompt_params)
    by_q = {(img, p.splitlines()[-1]): (adapter, p) for adapter, img, p in recorder.calls}
    assert [c[0] for c in recorder.calls] == ["s1", "s1", "s1", "s2", "s3", "s3"]  # stage order, routed adapters
    assert by_q[("a.jpg", Q1)] == ("s1", Q1)  # stage 1: no context
    a1, a1b = preds[2], preds[5]
    assert by_q[("a.jpg", Q2)][1] == f"Previous context:\nQ: {Q1}\nA: {a1}\nQ: {Q1B}\nA: {a1b}\n\n{Q2}"
    assert by_q[("a.jpg", Q3)][1] == (f"Previous context:\nQ: {Q1}\nA: {a1}\nQ: {Q1B}\nA: {a1b}\n"
                                      f"Q: {Q2}\nA: {preds[1]}\n\n{Q3}")  # stage order, not file order
    assert by_q[("b.jpg", Q3)][1] == f"Previous context:\nQ: {Q1}\nA: {preds[3]}\n\n{Q3}"  # image b's only
    assert preds[0].startswith("b:") and len(preds) == 6


def test_independent_mode_passes_no_context(recorder):
    answerer = Answerer(AdapterModels(recorder), None, {}, {}, {})
    prompt_params = section("prompt", template="{question}", candidates_template="{candidates}")
    answer_items(answerer, _items(), {1: "x", 2: "x", 3: "x"}, "independent", section("evaluate", decoding="free"),
                 prompt_params)
    assert all("Previous context" not in p for _, _, p in recorder.calls) and len(recorder.calls) == 6
    with pytest.raises(ValueError, match="unknown mode"):
        answer_items(answerer, _items(), {1: "x", 2: "x", 3: "x"}, "sequential", section("evaluate"), prompt_params)


def test_context_template_comes_from_params():
    p = section("evaluate", context_template="[{context}] {prompt}", context_line="{question}={answer}")
    assert context_prompt("Q?", [("a", "1"), ("b", "2")], p) == "[a=1\nb=2] Q?"
    assert context_prompt("Q?", [], p) == "Q?"


@pytest.mark.slow
@pytest.mark.parametrize("decoding,approach,mode", [("constrained", "sequential", "context"),
                                                    ("score", "sequential", "context"),
                                                    ("constrained", "curriculum", "independent")])
def test_the_engine_agrees_with_the_reference(tiny_project, tiny_adapters, decoding, approach, mode):
    from surgvqa.evaluate.evaluate import approach_adapters
    from surgvqa.infer.constrained import build_tries
    from surgvqa.infer.generate import load_adapters
    from surgvqa.infer.reference import load_separate, reference_answers
    from surgvqa.infer.routing import read_stage_table, route
    from surgvqa.io import read_jsonl
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import answer_choices, candidate_sets
    from surgvqa.model.sft import image_of

    project = tiny_project
    params = replace(project["params"], evaluate=replace(project["params"].evaluate, decoding=decoding, batch_size=5))
    train, test = read_jsonl(project["splits"] / "train.jsonl"), read_jsonl(project["splits"] / "test.jsonl")
    table = read_stage_table(project["root"] / "categorized" / "question_stages.csv")
    stages = route([r["question"] for r in test], table, params.categorize)
    items = [Item(r["img_id"], image_of(project["raw"], r["img_id"]), r["question"], stages[r["question"]])
             for r in test]
    dirs, adapter_of_stage = approach_adapters(approach, tiny_adapters)
    model, processor = load_base(base_record(tiny_adapters / "base"), params.model)
    choices = answer_choices(train)
    answerer = Answerer(AdapterModels(load_adapters(model, dirs)), processor, choices,
                        build_tries(processor.tokenizer, choices),
                        candidate_sets(train))
    fast = answer_items(answerer, items, adapter_of_stage, mode, params.evaluate, params.prompt)
    slow = reference_answers(load_separate(tiny_adapters / "base", dirs, params.model), answerer, items,
                             adapter_of_stage, mode, params.evaluate, params.prompt)
    assert len(items) >= 20 and fast == slow
    closed = [(p, it) for p, it in zip(fast, items) if it.question in choices]
    assert closed and all(p in choices[it.question] for p, it in closed)
