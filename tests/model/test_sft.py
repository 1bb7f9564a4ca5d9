"""Answer-only labels: the exact mask on a real example, and padding in a batch."""

import torch

from surgvqa.model.load import base_record, load_base
from surgvqa.model.processor import END_OF_TURN
from surgvqa.model.sft import IGNORE_INDEX, Collator, Example, encode, image_of


def _example(tiny_project, answer="yes"):
    return Example(image_of(tiny_project["raw"], next((tiny_project["raw"] / "images").glob("*.jpg")).stem),
                   "Is there text?\nQuestion type: yes/no.\nValid answers: no, yes.", answer)


def test_labels_are_exactly_the_answer_and_its_end_token(tiny_project):
    _, processor = load_base(base_record(tiny_project["base"]), tiny_project["params"].model)
    tok = processor.tokenizer
    enc = encode(processor, _example(tiny_project), max_length=512)
    answer_ids = tok("yes" + END_OF_TURN, add_special_tokens=False).input_ids
    n_prompt = len(enc["input_ids"]) - len(answer_ids)
    expected = [IGNORE_INDEX] * n_prompt + answer_ids
    assert enc["labels"].tolist() == expected
    # Everything masked is the prompt: system turn, user turn with all image pad tokens, assistant header.
    prompt_text = tok.decode(enc["input_ids"][:n_prompt])
    assert prompt_text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert prompt_text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    n_image = int((enc["input_ids"] == image_pad).sum())
    assert n_image == int(enc["image_grid_thw"].prod()) // 4 and n_image > 0
    assert all(label == IGNORE_INDEX for i, label in zip(enc["input_ids"].tolist(), enc["labels"].tolist())
               if i == image_pad)
    assert tok.decode([t for t in enc["labels"].tolist() if t != IGNORE_INDEX]) == "yes" + END_OF_TURN
    assert enc["mm_token_type_ids"].sum() == n_image  # the processor marks exactly the image tokens


def test_collator_pads_with_no_loss_and_no_attention(tiny_project):
    _, processor = load_base(base_record(tiny_project["base"]), tiny_project["params"].model)
    short = encode(processor, _example(tiny_project, "no"), 512)
    long = encode(processor, _example(tiny_project, "upper-left; center; lower-right"), 512)
    batch = Collator(processor.tokenizer.pad_token_id)([short, long])
    n = len(short["input_ids"])
    assert batch["input_ids"].shape == (2, len(long["input_ids"]))
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(long["input_ids"]) - n)
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, n:] == processor.tokenizer.pad_token_id).all()
    assert torch.equal(batch["labels"][1], long["labels"])
    assert batch["pixel_values"].shape[0] == short["pixel_values"].shape[0] * 2


def test_an_example_longer_than_max_length_is_an_error_not_a_truncation(tiny_project):
    import pytest

    from surgvqa.errors import SurgvqaError

    _, processor = load_base(base_record(tiny_project["base"]), tiny_project["params"].model)
    with pytest.raises(SurgvqaError, match="raise train.max_length"):
        encode(processor, _example(tiny_project), max_length=20)
