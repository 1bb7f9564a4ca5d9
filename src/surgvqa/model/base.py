"""Stage `base`: build (tiny, synthetic) or resolve (Hub id or local path) the base model and record its lineage.

`model.base: tiny` builds the embedded tiny Qwen2-VL into the stage's output folder and pretrains it on image
descriptions (see pretrain.py). `model.base: synthetic-qwen2-vl-2b` builds a random Qwen2-VL with the real
2B model's dimensions, for measuring speed and memory offline (synthetic.py; no pretraining, its answers
mean nothing). Anything else is a Hugging Face id or a local path; the stage then records what it resolved
to (the Hub commit or a content hash of the weights) in base.json, so an adapter's lineage names exactly the
weights it was trained on. All kinds load through the same Qwen2-VL classes (load.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from surgvqa import entry
from surgvqa.data.raw import RAW_DIR
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, write_json
from surgvqa.model.lineage import BASE_FILE, sha256_weights
from surgvqa.model.synthetic import SYNTHETIC_BASE
from surgvqa.params.model import ModelParams
from surgvqa.params.prompt import PromptParams


def tokenizer_corpus(train_rows: list[dict], descriptions: dict[str, str], prompt: PromptParams) -> list[str]:
    """The texts a locally built base's tokenizer is trained on: everything a prompt or an answer can hold."""
    from surgvqa.data import questions as Q
    from surgvqa.model.prompts import QTYPE_WORDING

    vocab = [*Q.ABNORMALITIES, *Q.LANDMARKS, *Q.INSTRUMENTS, *Q.POLYP_TYPES, *Q.PROCEDURES, *Q.POLYP_SIZES,
             *Q.COLOURS, *Q.GRID_CELLS, "none", "yes", "no", "not relevant", *map(str, range(20))]
    return [*(r["question"] + "\n" + r["answer"] for r in train_rows), *descriptions.values(),
            *(q.text for q in Q.QUESTIONS), " ".join(vocab), *QTYPE_WORDING.values(), prompt.template,
            prompt.candidates_template, prompt.describe, "You are a helpful assistant."]


def _refuse_prequantized(config: dict, where: str) -> None:
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method")
        raise SurgvqaError(f"{where} is a pre-quantized checkpoint ({method}): use the full-precision model;"
                           " set model.quantize: 4bit to quantize it at load time, "
                           "so the adapter can later be merged into full-precision weights")


def _build_tiny(out_dir: Path, train_file: Path, raw_dir: Path, model: ModelParams, prompt: PromptParams) -> dict:
    """The tiny base, pretrained on descriptions of the training images."""
    from surgvqa.model.pretrain import describe_images, pretrain
    from surgvqa.model.tiny import build_tiny

    rows = read_jsonl(train_file)
    descriptions = describe_images(rows)
    tiny = model.tiny
    build_tiny(out_dir, tokenizer_corpus(rows, descriptions, prompt), tiny, model.image_pixels)
    stats = {}
    if tiny.pretrain_epochs > 0:
        stats = pretrain(out_dir, raw_dir, descriptions, prompt.describe, tiny.pretrain_epochs,
                         tiny.pretrain_learning_rate, tiny.pretrain_batch_size, tiny.seed, out_dir.parent / ".pretrain")
    return {"name": "tiny", "source": str(out_dir), "revision": None, "content_hash": sha256_weights(out_dir),
            "kind": "tiny", "pretraining": stats}


def _build_synthetic(out_dir: Path, train_file: Path, model: ModelParams, prompt: PromptParams) -> dict:
    """The random 2B, in the dtype it will load in (bfloat16 on a GPU), seeded by model.tiny.seed."""
    from surgvqa.device import pick_device, pick_dtype
    from surgvqa.model import synthetic
    from surgvqa.model.pretrain import describe_images

    rows = read_jsonl(train_file)
    dtype = pick_dtype(model.dtype, pick_device(model.device))
    synthetic.build_synthetic(out_dir, tokenizer_corpus(rows, describe_images(rows), prompt), model.image_pixels,
                              model.tiny.seed, dtype)
    return {"name": SYNTHETIC_BASE, "source": str(out_dir), "revision": None, "content_hash": sha256_weights(out_dir),
            "kind": "synthetic"}


def _resolve_external(model: ModelParams) -> dict:
    local = Path(model.base)
    if local.is_dir():
        config = json.loads((local / "config.json").read_text())
        _refuse_prequantized(config, model.base)
        return {"name": model.base, "source": str(local), "revision": None, "content_hash": sha256_weights(local),
                "kind": "local"}
    from huggingface_hub import snapshot_download

    try:  # on a GPU runner this downloads once into the HF cache; offline it finds the cached copy or fails
        folder = Path(snapshot_download(model.base, revision=model.revision,
                                        allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many types; all mean the same to the user
        raise SurgvqaError(f"could not fetch {model.base} (revision {model.revision or 'main'}): {e}. Offline, set "
                           "model.base to a local copy or to `tiny`") from e
    _refuse_prequantized(json.loads((folder / "config.json").read_text()), model.base)
    return {"name": model.base, "source": model.base, "revision": folder.name, "content_hash": sha256_weights(folder),
            "kind": "hub"}


def run(out_dir: Path, train_file: Path, raw_dir: Path, report: Path, model: ModelParams,
        prompt: PromptParams) -> dict:
    """The stage: build (tiny, synthetic) or resolve (Hub id or path) the base, write base.json and a report."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if model.base == "tiny":
        record = _build_tiny(out_dir, train_file, raw_dir, model, prompt)
    elif model.base == SYNTHETIC_BASE:
        record = _build_synthetic(out_dir, train_file, model, prompt)
    else:
        record = _resolve_external(model)
    record.update(dtype=model.dtype, image_pixels=model.image_pixels)
    write_json(out_dir / BASE_FILE, record)
    write_json(report, record)
    return record


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.model.base` (dvc.yaml) and `surgvqa base`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--train", type=Path, default=Path("data/split/train.jsonl"))
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw layout (default: {RAW_DIR})")
    parser.add_argument("--out", type=Path, default=Path("models/base"))
    parser.add_argument("--report", type=Path, default=Path("reports/base.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, out_dir=args.out, train_file=args.train, raw_dir=args.raw,
                      report=args.report)


def _summary(r: dict) -> None:
    extra = f", pretraining {r['pretraining']}" if r.get("pretraining") else ""
    print(f"base: {r['name']} ({r['kind']}), weights {r['content_hash'][:12]}{extra}")


if __name__ == "__main__":
    raise SystemExit(main())
