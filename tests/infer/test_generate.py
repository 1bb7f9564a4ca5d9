"""The engine's batch inputs equal the processor's, and the image cache keeps what it should."""

import pytest
import torch

from surgvqa.infer.generate import ImageCache, encode_prompts
from surgvqa.model.sft import chat_text, load_image


@pytest.fixture(scope="module")
def base(tiny_project):
    from surgvqa.model.load import base_record, load_base

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
