"""The engine's batch inputs equal the processor's, and scoring sums exactly the answer tokens' log-probs."""

import pytest
import torch

from surgvqa.errors import SurgvqaError
from surgvqa.infer.generate import ImageCache, encode_prompts, score_batch
from surgvqa.model.sft import chat_text, load_image


@pytest.fixture(scope="module")
def base(tiny_project):
    from surgvqa.model.base import base_record, load_base

    return load_base(base_record(tiny_project["base"]), tiny_project["params"].model)


def test_deduplicated_encoding_equals_the_processor_and_the_vision_tower(tiny_project, base):
    model, processor = base
    images = sorted((tiny_project["raw"] / "images").glob("*.jpg"))[:2]
    prompts = [(images[0], "Is there text?"), (images[1], "How many polyps are in the image?"),
               (images[0], "What color is the abnormality? If more than one separate with ;")]
    processor.tokenizer.padding_side = "left"
    plain = processor(text=[chat_text(processor, p) for _, p in prompts], images=[load_image(i) for i, _ in prompts],
                      padding=True, return_tensors="pt")
    cache = ImageCache(size=8)
    with torch.inference_mode():
        enc = encode_prompts(model, processor, prompts, None, cache)
        again = encode_prompts(model, processor, prompts, None, cache)  # from the cache this time
        for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
            assert torch.equal(enc[key], plain[key]) and torch.equal(again[key], plain[key]), key
        expected = model.get_image_features(plain["pixel_values"], plain["image_grid_thw"]).pooler_output
        got = enc["mm_encoder_outputs"]["image"].pooler_output
        assert len(got) == 3 and all(torch.allclose(g, e, atol=1e-5) for g, e in zip(got, expected))
        assert got[0] is got[2]  # one image, computed once
        a = model.generate(**enc, max_new_tokens=4, do_sample=False)
        b = model.generate(**plain, max_new_tokens=4, do_sample=False)
    assert torch.equal(a, b)


def test_image_cache_drops_the_least_recently_used(tiny_project, base):
    model, processor = base
    images = sorted((tiny_project["raw"] / "images").glob("*.jpg"))[:3]
    cache = ImageCache(size=2)
    with torch.inference_mode():
        first = cache.features(model, processor, [images[0]])[images[0]][1]
        cache.features(model, processor, [images[1], images[2]])
        assert cache.features(model, processor, [images[0]])[images[0]][1] is not first  # recomputed
        assert len(cache._seen) == 2


def test_score_is_the_sum_of_the_answer_tokens_log_probabilities(tiny_project, base):
    from surgvqa.model.sft import IGNORE_INDEX, Example, encode

    model, processor = base
    image = next((tiny_project["raw"] / "images").glob("*.jpg"))
    pairs = [(image, "Is there text?", "yes"), (image, "Is there text?", "not relevant"),
             (image, "What type of procedure is the image taken from?", "capsule endoscopy")]
    with torch.inference_mode():
        batched = score_batch(model, processor, pairs, None, 4096, ImageCache())
        for (img, prompt, cand), got in zip(pairs, batched):
            enc = encode(processor, Example(img, prompt, cand), 4096)
            logits = model(input_ids=enc["input_ids"][None], pixel_values=enc["pixel_values"],
                           image_grid_thw=enc["image_grid_thw"], mm_token_type_ids=enc["mm_token_type_ids"][None]).logits
            logp = torch.log_softmax(logits[0, :-1].float(), -1)
            target = enc["labels"][1:]
            keep = target != IGNORE_INDEX
            want = logp[keep].gather(-1, target[keep][:, None]).sum().item()
            assert got == pytest.approx(want, abs=1e-3)
        with pytest.raises(SurgvqaError, match="evaluate.max_length"):
            score_batch(model, processor, pairs[:1], None, 16)
