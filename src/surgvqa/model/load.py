"""Loading a recorded base model, in full precision or 4-bit NF4, with its processor.

Device and dtype come from the environment (model.device / model.dtype `auto`), weights load from safetensors
only, and remote code stays off unless model.trust_remote_code says otherwise. The `base` stage (base.py)
writes the record this module reads.
"""

from __future__ import annotations

from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json
from surgvqa.model.lineage import BASE_FILE, check_safetensors, restore_hint
from surgvqa.params.model import ModelParams

# Kept in full precision under 4-bit loading: the vision tower (its fused qkv is tiny next to the LM, and NF4
# blurs the patch features every answer depends on) and the output head. "visual" alone matches no module:
# bitsandbytes compares full module names, which start with "model.".
QUANT_SKIP_MODULES = ["model.visual", "lm_head"]


def base_record(base_dir: Path) -> dict:
    """The base.json written by the base stage."""
    return read_json(base_dir / BASE_FILE, hint=restore_hint(base_dir, "base"))


def check_local_weights(source: str) -> None:
    """A local base's safetensors files open cleanly (header and size), so a truncated or corrupted file is an error
    naming it, not a traceback from deep inside transformers. A Hub id is left to the Hub's own checks."""
    folder = Path(source)
    if not folder.is_dir():
        return
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SurgvqaError(f"{folder} has no *.safetensors weights (only safetensors are loaded, never pickle): "
                           f"{restore_hint(folder, 'base')}")
    for path in files:
        check_safetensors(path, restore_hint(folder, "base"))


def load_base(record: dict, model: ModelParams):
    """The base model (full precision, or NF4 with double quantization when model.quantize is 4bit) and processor."""
    from transformers import BitsAndBytesConfig, Qwen2VLForConditionalGeneration

    from surgvqa.device import pick_device, pick_dtype
    from surgvqa.model.processor import load_processor

    check_local_weights(record["source"])
    device = pick_device(model.device)
    kwargs = dict(revision=record["revision"], dtype=pick_dtype(model.dtype, device), use_safetensors=True,
                  trust_remote_code=model.trust_remote_code, device_map={"": str(device)})
    if model.quantize == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=pick_dtype(model.compute_dtype, device), llm_int8_skip_modules=QUANT_SKIP_MODULES)
    loaded = Qwen2VLForConditionalGeneration.from_pretrained(record["source"], **kwargs)
    if model.quantize == "4bit":
        disable_cpu_inference_layout(loaded)
    processor = load_processor(record["source"], record.get("image_pixels", model.image_pixels), record["revision"],
                               model.trust_remote_code)
    return loaded, processor


def disable_cpu_inference_layout(model) -> int:
    """Stop 4-bit layers switching to bitsandbytes' inference-only CPU layout; returns how many layers.

    On a CPU with AVX512-BF16, the first forward outside training repacks each Linear4bit's weights into a
    layout that cannot take gradients, and the next training step fails with "a view of a leaf Variable that
    requires grad is being used in an in-place operation". Training interleaves evaluation, so it is off.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    return len(layers)


def quantization_record(model: ModelParams, device_type: str) -> dict:
    """How the base was quantized at load time, for the lineage."""
    if model.quantize == "none":
        return {"quantized": False}
    import torch

    from surgvqa.device import pick_dtype

    return {"quantized": True, "method": "bitsandbytes-nf4", "double_quant": True,
            "compute_dtype": str(pick_dtype(model.compute_dtype, torch.device(device_type))).replace("torch.", ""),
            "skip_modules": QUANT_SKIP_MODULES}
