"""The prefix-tree decoder: it only ever finishes on a whole candidate answer."""

import pytest

from surgvqa.infer.constrained import CandidateTrie, build_tries, candidate_ids
from surgvqa.model.prompts import answer_choices


def test_the_trie_allows_only_continuations_of_whole_candidates():
    trie = CandidateTrie({"yes": [5, 9], "no": [6, 9], "not relevant": [6, 7, 8, 9]})
    assert sorted(trie.allowed([])) == [5, 6]
    assert trie.allowed([5]) == [9] and sorted(trie.allowed([6])) == [7, 9]
    assert trie.allowed([5, 9]) == [] and trie.allowed([5, 6]) == []  # complete, or off the tree
    assert trie.depth == 4 and trie.answers[(6, 7, 8, 9)] == "not relevant"
    with pytest.raises(ValueError, match="at least one"):
        CandidateTrie({})


def test_choices_are_whole_training_answers_of_closed_set_questions_only():
    train = [{"question": "Is there text?", "answer": "yes"}, {"question": "is there  text?", "answer": "no"},
             {"question": "Where in the image is the abnormality?", "answer": "center; center-left"},
             {"question": "Describe the image", "answer": "pink mucosa"}]
    assert answer_choices(train) == {"Is there text?": ["no", "yes"],
                                     "Where in the image is the abnormality?": ["center; center-left"]}


def test_constrained_generation_never_leaves_the_candidates(tiny_project):
    """On the barely trained tiny base, free generation wanders; constrained generation must not."""
    from surgvqa.infer.generate import generate_batch
    from surgvqa.infer.shared_prefix import decode_constrained
    from surgvqa.io import read_jsonl
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.prompts import candidate_sets, render_prompt
    from surgvqa.model.sft import image_of

    project = tiny_project
    train, test = read_jsonl(project["splits"] / "train.jsonl"), read_jsonl(project["splits"] / "test.jsonl")
    model, processor = load_base(base_record(project["base"]), project["params"].model)
    choices = answer_choices(train)
    tries = build_tries(processor.tokenizer, choices)
    rows = [r for r in test if r["question"] in choices]
    prompts = [(image_of(project["raw"], r["img_id"]), render_prompt(r["question"], candidate_sets(train),
                                                                  project["params"].prompt)) for r in rows]
    import torch

    with torch.inference_mode():
        batch_tries = [tries[r["question"]] for r in rows]
        constrained = decode_constrained(model, processor, prompts, None, batch_tries)
        free = generate_batch(model, processor, prompts, None, 8)
    assert len(rows) >= 20
    assert all(p in choices[r["question"]] for p, r in zip(constrained, rows))
    assert any(p not in choices[r["question"]] for p, r in zip(free, rows))  # the check can fail


def test_candidates_are_tokenized_as_training_appends_answers(tiny_project):
    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.sft import IGNORE_INDEX, Example, encode

    _, processor = load_base(base_record(tiny_project["base"]), tiny_project["params"].model)
    image = next((tiny_project["raw"] / "images").glob("*.jpg"))
    for answer in ("yes", "not relevant", "5-10mm;<5mm", "center; center-left"):
        enc = encode(processor, Example(image, "Is there text?", answer), 4096)
        assert enc["labels"][enc["labels"] != IGNORE_INDEX].tolist() == candidate_ids(processor.tokenizer, answer)
