"""The `base` stage and base-model loading, in full precision or 4-bit NF4.

`model.base: tiny` builds the embedded tiny Qwen2-VL into the stage's output folder and pretrains it on image
descriptions (see pretrain.py). Anything else is a Hugging Face id or a local path; the stage then records
what it resolved to (the Hub commit or a content hash of the weights) in base.json, so an adapter's lineage
names exactly the weights it was trained on. Both kinds load through the same Qwen2-VL classes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_json
from surgvqa.model.lineage import BASE_FILE, read_json_record, sha256_weights
from surgvqa.params import ModelParams, Params

# Kept in full precision under 4-bit loading: the vision tower (its fused qkv is tiny next to the LM, and NF4
# blurs the patch features every answer depends on) and the output head. "visual" alone matches no module:
# bitsandbytes compares full module names, which start with "model.".
QUANT_SKIP_MODULES = ["model.visual", "lm_head"]


def _corpus(train_rows: list[dict], descriptions: dict[str, str], params: Params) -> list[str]:
    from surgvqa.data import questions as Q
    from surgvqa.model.prompts import QTYPE_WORDING

    vocab = [*Q.ABNORMALITIES, *Q.LANDMARKS, *Q.INSTRUMENTS, *Q.POLYP_TYPES, *Q.PROCEDURES, *Q.POLYP_SIZES,
             *Q.COLOURS, *Q.GRID_CELLS, "none", "yes", "no", "not relevant", *map(str, range(20))]
    return [*(r["question"] + "\n" + r["answer"] for r in train_rows), *descriptions.values(),
            *(q.text for q in Q.QUESTIONS), " ".join(vocab), *QTYPE_WORDING.values(), params.prompt.template,
            params.prompt.candidates_template, params.prompt.describe, "You are a helpful assistant."]


def _refuse_prequantized(config: dict, where: str) -> None:
    if config.get("quantization_config"):
        raise SurgvqaError(f"{where} is a pre-quantized checkpoint ({config['quantization_config'].get('quant_method')}):"
                           " use the full-precision model; set model.quantize: 4bit to quantize it at load time, "
                           "so the adapter can later be merged into full-precision weights")


def _resolve_external(mp: ModelParams) -> dict:
    local = Path(mp.base)
    if local.is_dir():
        config = json.loads((local / "config.json").read_text())
        _refuse_prequantized(config, mp.base)
        return {"name": mp.base, "source": str(local), "revision": None, "content_hash": sha256_weights(local),
                "kind": "local"}
    from huggingface_hub import snapshot_download

    try:  # on a GPU runner this downloads once into the HF cache; offline it finds the cached copy or fails
        folder = Path(snapshot_download(mp.base, revision=mp.revision,
                                        allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many types; all mean the same to the user
        raise SurgvqaError(f"could not fetch {mp.base} (revision {mp.revision or 'main'}): {e}. Offline, set "
                           "model.base to a local copy or to `tiny`") from e
    _refuse_prequantized(json.loads((folder / "config.json").read_text()), mp.base)
    return {"name": mp.base, "source": mp.base, "revision": folder.name, "content_hash": sha256_weights(folder),
            "kind": "hub"}


def run(out_dir: Path, train_file: Path, raw_dir: Path, report: Path, params: Params) -> dict:
    """The `base` stage: build (tiny) or resolve (Hub id or path) the base, write base.json and a report."""
    mp = params.model
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if mp.base == "tiny":
        from surgvqa.model.pretrain import describe_images, pretrain
        from surgvqa.model.tiny import build_tiny

        rows = read_jsonl(train_file)
        descriptions = describe_images(rows)
        build_tiny(out_dir, _corpus(rows, descriptions, params), mp.tiny, mp.image_pixels)
        stats = {}
        if mp.tiny.pretrain_epochs > 0:
            t = mp.tiny
            stats = pretrain(out_dir, raw_dir, descriptions, params.prompt.describe, t.pretrain_epochs,
                             t.pretrain_learning_rate, t.pretrain_batch_size, t.seed, out_dir.parent / ".pretrain")
        record = {"name": "tiny", "source": str(out_dir), "revision": None, "content_hash": sha256_weights(out_dir),
                  "kind": "tiny", "pretraining": stats}
    else:
        record = _resolve_external(mp)
    record.update(dtype=mp.dtype, image_pixels=mp.image_pixels)
    write_json(out_dir / BASE_FILE, record)
    write_json(report, record)
    return record


def base_record(base_dir: Path) -> dict:
    """The base.json written by the base stage."""
    return read_json_record(base_dir / BASE_FILE)


def load_base(record: dict, mp: ModelParams):
    """The base model (full precision, or NF4 with double quantization when model.quantize is 4bit) and processor.

    Device and dtype come from the environment (model.device / model.dtype `auto`). The weights load from
    safetensors only, and remote code stays off unless model.trust_remote_code says otherwise.
    """
    from transformers import BitsAndBytesConfig, Qwen2VLForConditionalGeneration

    from surgvqa.device import pick_device, pick_dtype
    from surgvqa.model.processor import load_processor

    device = pick_device(mp.device)
    dtype = pick_dtype(mp.dtype, device)
    kwargs = dict(revision=record["revision"], dtype=dtype, use_safetensors=True,
                  trust_remote_code=mp.trust_remote_code, device_map={"": str(device)})
    if mp.quantize == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=pick_dtype(mp.compute_dtype, device), llm_int8_skip_modules=QUANT_SKIP_MODULES)
    model = Qwen2VLForConditionalGeneration.from_pretrained(record["source"], **kwargs)
    if mp.quantize == "4bit":
        disable_cpu_inference_layout(model)
    processor = load_processor(record["source"], record.get("image_pixels", mp.image_pixels), record["revision"],
                               mp.trust_remote_code)
    return model, processor


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


def quantization_record(mp: ModelParams, device_type: str) -> dict:
    """How the base was quantized at load time, for the lineage."""
    if mp.quantize == "none":
        return {"quantized": False}
    import torch

    from surgvqa.device import pick_dtype

    return {"quantized": True, "method": "bitsandbytes-nf4", "double_quant": True,
            "compute_dtype": str(pick_dtype(mp.compute_dtype, torch.device(device_type))).replace("torch.", ""),
            "skip_modules": QUANT_SKIP_MODULES}
