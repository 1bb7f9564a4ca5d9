"""The tiny base: a real Qwen2-VL checkpoint on disk, its lineage record, and refusal of pre-quantized bases."""

import dataclasses
import json

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.model.base import run
from surgvqa.model.lineage import sha256_weights
from surgvqa.model.load import base_record
from surgvqa.model.processor import QWEN2_VL_CHAT_TEMPLATE, ImageOnlyQwen2VLProcessor, load_processor


def test_tiny_base_loads_offline_through_the_qwen2_vl_classes(tiny_project):
    from transformers import Qwen2VLForConditionalGeneration

    base = tiny_project["base"]
    model = Qwen2VLForConditionalGeneration.from_pretrained(base, use_safetensors=True)
    assert model.config.model_type == "qwen2_vl"
    text = model.config.text_config
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    proc = load_processor(base, 56 * 56, revision=None, trust_remote_code=False)
    assert isinstance(proc, ImageOnlyQwen2VLProcessor) and proc.chat_template == QWEN2_VL_CHAT_TEMPLATE
    assert proc.tokenizer.eos_token == "<|im_end|>" and proc.tokenizer.pad_token == "<|endoftext|>"
    record = base_record(base)
    assert record["name"] == "tiny" and record["content_hash"] == sha256_weights(base)
    stats = record["pretraining"]
    assert stats["steps"] > 0 and stats["final_loss"] < stats["first_loss"]
    assert not list(base.glob("*.bin")), "weights must be safetensors only"


def test_a_pre_quantized_local_base_is_refused(tiny_project, tmp_path):
    import shutil

    local = tmp_path / "quantized"
    shutil.copytree(tiny_project["base"], local)
    config = json.loads((local / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (local / "config.json").write_text(json.dumps(config))
    params = tiny_project["params"]
    model = dataclasses.replace(params.model, base=str(local))
    with pytest.raises(SurgvqaError, match="pre-quantized"):
        run(tmp_path / "out", tiny_project["splits"] / "train.jsonl", tiny_project["raw"], tmp_path / "r.json", model,
            params.prompt)
