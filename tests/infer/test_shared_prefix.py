"""Shared-prefix constrained decoding: the same answers as generate() under the same constraint, with each
image's common prefix computed once and forced tokens never run through the model."""

import pytest
import torch

from surgvqa.infer.constrained import CandidateTrie
from surgvqa.infer.shared_prefix import _Row, common_prefix


def test_common_prefix_leaves_every_row_a_token_of_its_own():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert common_prefix([[1, 2, 3]]) == 2
    assert common_prefix([[7, 2], [8, 2]]) == 0


def test_a_row_takes_forced_tokens_without_asking_the_model():
    trie = CandidateTrie({"yes": [5, 9], "no": [6, 9], "not relevant": [6, 7, 8, 9]})
    row = _Row(trie)
    row.take(6)  # "no" and "not relevant" both start with 6: a choice remains
    assert row.path == [6] and not row.done and sorted(row.node) == [7, 9]
    row.pending = []
    row.take(7)  # after 7 the rest is forced: 8, then the end token
    assert row.path == [6, 7, 8, 9] and row.pending == [7, 8, 9] and row.done
    assert trie.answers[tuple(row.path)] == "not relevant"


@pytest.fixture(scope="module")
def stage_model(tiny_project, tiny_adapters):
    from peft import PeftModel

    from surgvqa.model.load import base_record, load_base

    model, processor = load_base(base_record(tiny_adapters / "base"), tiny_project["params"].model)
    return PeftModel.from_pretrained(model, str(tiny_adapters / "sequential" / "stage_2")).eval(), processor


def test_answers_equal_generate_and_each_prefix_runs_once(tiny_project, stage_model, monkeypatch):
    from surgvqa.infer.constrained import build_tries
    from surgvqa.infer.engine import context_prompt
    from surgvqa.infer.reference import answer_one
    from surgvqa.infer.shared_prefix import decode_constrained
    from surgvqa.io import read_jsonl
    from surgvqa.model.prompts import answer_choices, candidate_sets, render_prompt
    from surgvqa.model.sft import chat_text, image_of, load_image

    project, (model, processor) = tiny_project, stage_model
    train, test = read_jsonl(project["splits"] / "train.jsonl"), read_jsonl(project["splits"] / "test.jsonl")
    choices = answer_choices(train)
    tries = build_tries(processor.tokenizer, choices)
    rows = [r for r in test if r["question"] in choices][:24]
    context = [("Is there text?", "no"), ("What type of procedure is the image taken from?", "colonoscopy")]
    images = list(dict.fromkeys(r["img_id"] for r in rows))
    prompts = []
    for r in rows:  # every other image's questions carry context, so prefixes differ in length across images
        prompt = render_prompt(r["question"], candidate_sets(train), project["params"].prompt)
        shared = context if images.index(r["img_id"]) % 2 else []
        prompts.append((image_of(project["raw"], r["img_id"]),
                        context_prompt(prompt, shared, project["params"].evaluate)))
    row_tries = [tries[r["question"]] for r in rows]
    assert len({img for img, _ in prompts}) < len(prompts)  # several questions per image

    calls = []
    forward = model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return forward(*args, **kwargs)

    with torch.inference_mode():
        want = [answer_one(model, processor, img, p, None, t.depth, t) for (img, p), t in zip(prompts, row_tries)]
        monkeypatch.setattr(model, "forward", counting)
        got = decode_constrained(model, processor, prompts, None, row_tries)
    assert got == want
    full = sum(len(processor(text=[chat_text(processor, p)], images=[load_image(img)]).input_ids[0])
               for img, p in prompts)
    heads, tails = calls[0], calls[1]
    assert heads[0] == len({img for img, _ in prompts}) and tails[0] == len(prompts)  # one prefix row per image
    assert heads[0] * heads[1] + tails[0] * tails[1] < full  # less than the prompts' own length, padding included
    longest = max(t.depth for t in row_tries)
    assert len(calls) - 1 < longest  # forced tokens never ran: fewer passes than tokens in the longest answer


def test_logits_equal_a_plain_forward_over_the_whole_sequence(tiny_project, stage_model):
    """Positions, masks and the copied prefix cache are right: after the prompt and after appended answer
    tokens, each row's logits are those of one plain forward over its whole unpadded sequence."""
    from surgvqa.infer.constrained import candidate_ids
    from surgvqa.infer.shared_prefix import SharedPrefixBatch
    from surgvqa.model.sft import chat_text, load_image

    model, processor = stage_model
    images = sorted((tiny_project["raw"] / "images").glob("*.jpg"))[:2]
    ctx = "Previous context:\nQ: Is there text?\nA: no\n\n"
    prompts = [(images[0], ctx + "How many polyps are in the image?"), (images[1], "Is there text?"),
               (images[0], ctx + "What color is the abnormality? If more than one separate with ;"),
               (images[1], "Have all polyps been removed?")]
    answers = [candidate_ids(processor.tokenizer, a) for a in ("11", "not relevant", "pink; red", "yes")]
    with torch.inference_mode():
        batch = SharedPrefixBatch(model, processor, prompts, None)
        after_prompt = batch.feed(batch.tails)
        fed = [1, 3, 2, 0]  # uneven, so the step block pads; the last row is fed nothing
        assert all(len(a) >= k for a, k in zip(answers, fed))
        after_step = batch.feed([a[:k] for a, k in zip(answers, fed)])
        for i, (img, p) in enumerate(prompts):
            enc = processor(text=[chat_text(processor, p)], images=[load_image(img)], return_tensors="pt")
            n, k = enc["input_ids"].shape[1], fed[i]
            enc["input_ids"] = torch.cat([enc["input_ids"], torch.tensor([answers[i][:k]], dtype=torch.long)], dim=1)
            enc["attention_mask"] = torch.ones_like(enc["input_ids"])
            enc["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros(1, k, dtype=torch.long)], 1)
            plain = model(**enc).logits[0]
            assert torch.allclose(after_prompt[i], plain[n - 1], atol=1e-4), i
            if k:
                assert torch.allclose(after_step[i], plain[n + k - 1], atol=1e-4), i


def test_score_is_the_sum_of_the_answer_tokens_log_probabilities(tiny_project, stage_model, monkeypatch):
    from surgvqa.errors import SurgvqaError
    from surgvqa.infer.generate import ImageCache
    from surgvqa.infer.shared_prefix import score_candidates
    from surgvqa.model.sft import IGNORE_INDEX, Example, encode

    model, processor = stage_model
    image, other = sorted((tiny_project["raw"] / "images").glob("*.jpg"))[:2]
    pairs = [(image, "Is there text?", "yes"), (image, "Is there text?", "not relevant"),
             (image, "What type of procedure is the image taken from?", "capsule endoscopy"),
             (other, "Is there text?", "no")]
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape) or forward(*a, **k))
    with torch.inference_mode():
        batched = score_candidates(model, processor, pairs, None, 4096, ImageCache())
        assert len(calls) == 2 and calls[0][0] == 3  # one prompt row per (image, question), then the candidates
        monkeypatch.setattr(model, "forward", forward)
        for (img, prompt, cand), got in zip(pairs, batched):
            enc = encode(processor, Example(img, prompt, cand), 4096)
            logits = model(input_ids=enc["input_ids"][None], pixel_values=enc["pixel_values"],
                           image_grid_thw=enc["image_grid_thw"],
                           mm_token_type_ids=enc["mm_token_type_ids"][None]).logits
            logp = torch.log_softmax(logits[0, :-1].float(), -1)
            target = enc["labels"][1:]
            keep = target != IGNORE_INDEX
            want = logp[keep].gather(-1, target[keep][:, None]).sum().item()
            assert got == pytest.approx(want, abs=1e-3)
        with pytest.raises(SurgvqaError, match="evaluate.max_length"):
            score_candidates(model, processor, pairs[:1], None, 16)
