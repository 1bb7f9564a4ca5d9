"""The synthetic 2B base: the real Qwen2-VL-2B-Instruct's shapes and parameter count, on the meta device (no
weights allocated), and the base stage recognising its name."""

import json

import pytest

from surgvqa.model import synthetic
from surgvqa.model.synthetic import QWEN2_VL_2B_PARAMETERS, SYNTHETIC_BASE
from tests.conftest import repo_params, section

# Qwen/Qwen2-VL-2B-Instruct's config.json, the values this base must reproduce (sources in synthetic.py).
REAL_TEXT = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6)
REAL_VISION = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2)
REAL_ROPE = {"rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}


@pytest.fixture(scope="module")
def tokenizer():
    from surgvqa.model.tiny import train_tokenizer

    return train_tokenizer(["Is there a polyp?\nyes", "What colour is the abnormality?\npink"] * 4,
                           synthetic.TOKENIZER_VOCAB)


@pytest.fixture(scope="module")
def meta(tokenizer):
    return synthetic.meta_model(tokenizer)


def test_on_the_meta_device_it_has_exactly_the_real_models_parameter_count(meta):
    assert all(p.is_meta for p in meta.parameters()), "counting must not allocate the weights"
    # The Hub's safetensors count holds the tied head once; so does parameters() (shared tensors are listed once).
    assert meta.lm_head.weight is meta.model.language_model.embed_tokens.weight
    assert synthetic.parameter_count(meta) == QWEN2_VL_2B_PARAMETERS == 2_208_985_600
    # Its language model has Qwen2.5-1.5B-Instruct's shapes, whose Hub count (same source) is 1,543,714,304.
    assert synthetic.parameter_count(meta.model.language_model) == 1_543_714_304


def test_the_config_has_the_real_dimensions_and_the_tokenizers_special_ids(tokenizer, meta):
    config = meta.config
    text, vision = config.text_config, config.vision_config
    assert {k: getattr(text, k) for k in REAL_TEXT} == REAL_TEXT
    assert {k: getattr(vision, k) for k in REAL_VISION} == REAL_VISION
    assert {k: text.rope_parameters[k] for k in REAL_ROPE} == REAL_ROPE
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    assert config.tie_word_embeddings is True
    # Special tokens come from the locally trained tokenizer, whose vocabulary is far smaller than the embedding.
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert text.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert text.pad_token_id == tokenizer.pad_token_id
    assert len(tokenizer) <= synthetic.TOKENIZER_VOCAB < text.vocab_size


def test_the_model_is_created_directly_in_the_requested_dtype(meta):
    import torch

    model = synthetic.synthetic_model(meta.config, torch.bfloat16, "meta")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_the_base_stage_builds_the_synthetic_base_by_its_name(tmp_path, monkeypatch):
    """base.run routes the name to build_synthetic (stubbed: the real one writes gigabytes) and records it."""
    from surgvqa.model import base
    from surgvqa.model.lineage import BASE_FILE, sha256_weights

    calls = {}

    def fake_build(out_dir, corpus, image_pixels, seed, dtype):
        calls.update(corpus=corpus, image_pixels=image_pixels, dtype=dtype)
        (out_dir / "model.safetensors").write_bytes(b"weights")
        return out_dir

    monkeypatch.setattr(synthetic, "build_synthetic", fake_build)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"img_id": "a", "question": "Is there a polyp?", "answer": "yes"}) + "\n")
    model = section("model", base=SYNTHETIC_BASE, device="cpu", dtype="auto")
    out = tmp_path / "base"
    record = base.run(out, train, tmp_path / "raw", tmp_path / "report.json", model, repo_params().prompt)

    import torch

    assert record["kind"] == "synthetic" and record["name"] == SYNTHETIC_BASE and record["source"] == str(out)
    assert record["content_hash"] == sha256_weights(out) and record["revision"] is None
    assert json.loads((out / BASE_FILE).read_text()) == record
    assert calls["dtype"] == torch.float32 and calls["image_pixels"] == model.image_pixels  # auto on CPU
    assert any("Is there a polyp?" in text for text in calls["corpus"])
