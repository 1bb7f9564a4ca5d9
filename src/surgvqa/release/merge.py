"""DVC stage `merge`: merge the released approach's adapters into the full-precision base, one folder per model.

The base is always loaded unquantized, in float32, for the merge (the sum is saved in `merge.dtype`), QLoRA
adapters included: PEFT's `merge_and_unload` on a bitsandbytes 4-bit model adds the delta and re-quantizes, so
the "merged" model stays 4-bit and answers differently from what was evaluated (that corruption shipped once;
it is refused here).

Writes models/merged/:
- one folder per merged model (`stage_1`..`stage_3` for sequential, `model` for curriculum and baseline), each
  loadable on its own: safetensors weights, config, tokenizer, image processor and chat template, and a
  lineage.json carrying the chain forward (adapter hashes and lineage, base name and hash, training
  quantization, merge dtype and method);
- manifest.json: which model answers each stage, the serving settings the release answers with (prompt,
  decoding, candidate answers, the question-to-stage table) and `merged_sha256`, one hash over all of it.

Guards, each an error saying what to do: a quantized base, a base whose hash differs from the adapter's
lineage, an adapter that fails verify-adapter. The same inputs give the same bytes.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from surgvqa import entry
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, replace_folder, write_json
from surgvqa.model.lineage import LINEAGE_FILE, read_lineage, restore_hint, training_stage
from surgvqa.params.categorize import CategorizeParams
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.merge import MergeParams
from surgvqa.params.model import ModelParams
from surgvqa.params.prompt import PromptParams
from surgvqa.params.release import ReleaseParams
from surgvqa.release.files import MANIFEST, candidate_hash, released_adapters, sha256_folder
from surgvqa.release.memory import free_memory

# bitsandbytes' Linear4bit default, which transformers' BitsAndBytesConfig keeps: what QLoRA training used.
NF4_BLOCKSIZE = 64


def refuse_quantized(model, where: str) -> None:
    """Stop a merge into quantized weights: the sum would be re-quantized and the adapter's delta blurred."""
    modules = {type(m).__name__ for m in model.modules()}
    quantized = (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
                 or getattr(model.config, "quantization_config", None) or modules & {"Linear4bit", "Linear8bitLt"})
    if quantized:
        raise SurgvqaError(f"{where} is quantized: merging into 4-bit or 8-bit weights re-quantizes the sum and "
                           "corrupts the adapter's delta. Merge into the full-precision base (the merge stage loads "
                           "it unquantized in merge.dtype); if the base checkpoint itself is pre-quantized, use its "
                           "full-precision original")


def check_adapter(adapter: Path, base: dict, model: ModelParams) -> dict:
    """The adapter's lineage, after verify-adapter passed and its base hash matched the base being merged into."""
    from surgvqa.train.verify import verify_adapter

    report = verify_adapter(adapter, model)
    if not report.ok:
        raise SurgvqaError(f"{adapter} fails verify-adapter ({report.failed_names()}); see `surgvqa verify-adapter "
                           f"{adapter}`, then {restore_hint(adapter)} before merging")
    lineage = read_lineage(adapter)
    if lineage["base"]["content_hash"] != base["content_hash"]:
        raise SurgvqaError(f"{adapter} was trained on base weights {lineage['base']['content_hash'][:12]}, but the "
                           f"base to merge into has {base['content_hash'][:12]}: retrain the adapter on this base "
                           f"(`dvc repro {training_stage(adapter)}`) or restore the base it was trained on")
    return lineage


def lineage_chain(lineage: dict) -> list[dict]:
    """The lineage records of an adapter's ancestors, its parent first (empty for an adapter trained from the base)."""
    chain, parent = [], lineage.get("parent")
    while parent:
        record = read_lineage(Path(parent["path"]))
        chain.append(record)
        parent = record.get("parent")
    return chain


def nf4_roundtrip(model, skip_modules: list[str]) -> int:
    """Replace each weight QLoRA training quantized (every Linear outside `skip_modules`) with its NF4 round trip
    (double quantization, as training loaded it); returns how many layers changed."""
    import bitsandbytes.functional as bnb_functional
    import torch

    count = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or any(name == s or name.startswith(s + ".")
                                                               for s in skip_modules):
                continue
            packed, state = bnb_functional.quantize_4bit(module.weight.data, blocksize=NF4_BLOCKSIZE,
                                                         compress_statistics=True, quant_type="nf4")
            module.weight.data.copy_(bnb_functional.dequantize_4bit(packed, state).to(module.weight.dtype))
            count += 1
    return count


def merge_adapter(base_model, adapter: Path, onto: str, training_quantization: dict):
    """The base with the adapter's delta added to its weights (consumes `base_model`)."""
    from peft import PeftModel

    refuse_quantized(base_model, "the base to merge into")
    if onto == "nf4_roundtrip":
        if not training_quantization.get("quantized"):
            raise SurgvqaError(f"merge.onto is nf4_roundtrip, but {adapter} was trained on a full-precision base: "
                               "there is no NF4 rounding to match; set merge.onto: original")
        nf4_roundtrip(base_model, training_quantization["skip_modules"])
    return PeftModel.from_pretrained(base_model, str(adapter)).merge_and_unload()


def merged_lineage(name: str, stages: list[int], adapter: Path, lineage: dict, merge: MergeParams,
                   folder: Path) -> dict:
    """What a merged model was made from: adapter and ancestors, base, training quantization, merge method."""
    from importlib.metadata import version

    return {"kind": "merged", "approach": lineage["approach"], "name": name, "stages": stages,
            "adapter": {"path": str(adapter), "adapter_sha256": lineage["adapter_sha256"], "lineage": lineage},
            "chain": lineage_chain(lineage), "base": lineage["base"], "training_quantization": lineage["quantization"],
            "merge": {"dtype": merge.dtype, "onto": merge.onto, "method": "peft merge_and_unload",
                      "added_in": "float32",
                      "peft": version("peft"), "transformers": version("transformers")},
            "merged_sha256": sha256_folder(folder)}


def serving_settings(train_rows: list[dict], stage_table: dict[str, int], image_pixels: int, prompt: PromptParams,
                     evaluate: EvalParams, categorize: CategorizeParams) -> dict:
    """How the release answers, frozen with it: the prompt, the decoding, the training split's candidate answers
    and the question-to-stage table (a question outside it is categorized as training's were)."""
    from surgvqa.model.prompts import answer_choices, candidate_sets

    return {"prompt": dataclasses.asdict(prompt), "evaluate": dataclasses.asdict(evaluate),
            "categorize": dataclasses.asdict(categorize), "stage_table": stage_table, "image_pixels": image_pixels,
            "choices": answer_choices(train_rows), "prompt_candidates": candidate_sets(train_rows)}


def run(models_dir: Path, splits_dir: Path, stage_table: Path, out_dir: Path, release: ReleaseParams,
        merge: MergeParams, model: ModelParams, prompt: PromptParams, evaluate: EvalParams,
        categorize: CategorizeParams) -> dict:
    """The stage: check, merge and save every adapter of `release.approach`, then the manifest; returns it."""
    import torch
    from tqdm import tqdm

    from surgvqa.infer.routing import read_stage_table
    from surgvqa.model.load import base_record, load_base

    adapters, route = released_adapters(release.approach, models_dir)
    base = base_record(models_dir / "base")
    # The delta is added in float32 whatever merge.dtype is: in bfloat16 much of a small LoRA delta would round
    # away. The sum is then cast to merge.dtype for saving.
    float32 = dataclasses.replace(model, quantize="none", dtype="float32")
    partial = out_dir.with_name(out_dir.name + ".partial")  # the output appears whole or not at all
    shutil.rmtree(partial, ignore_errors=True)
    models = {}
    for name, adapter in tqdm(adapters.items(), desc="merge", unit="model"):
        lineage = check_adapter(adapter, base, model)
        base_model, processor = load_base(base, float32)
        merged = merge_adapter(base_model, adapter, merge.onto, lineage["quantization"])
        merged = merged.to(getattr(torch, merge.dtype))
        folder = partial / name
        merged.save_pretrained(folder, safe_serialization=True)
        # A load-time option (set by HF_HUB_OFFLINE), not a property of the tokenizer: saved, it would make the
        # folder's bytes depend on the environment the merge ran in.
        processor.tokenizer.init_kwargs.pop("local_files_only", None)
        processor.save_pretrained(folder)
        record = merged_lineage(name, [s for s, n in route.items() if n == name], adapter, lineage, merge, folder)
        write_json(folder / LINEAGE_FILE, record)
        models[name] = record["merged_sha256"]
        del base_model, merged  # a 2B model per stage: never two in memory at once
        free_memory()
    serving = serving_settings(read_jsonl(splits_dir / "train.jsonl"), read_stage_table(stage_table),
                               base["image_pixels"], prompt, evaluate, categorize)
    manifest = {"approach": release.approach, "mode": release.mode, "route": {str(s): n for s, n in route.items()},
                "models": models, "serving": serving}
    manifest["merged_sha256"] = candidate_hash(manifest)
    write_json(partial / MANIFEST, manifest)
    replace_folder(out_dir, partial)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.release.merge` (dvc.yaml) and `surgvqa merge`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--models", type=Path, default=Path("models"), help="holds base/ and the adapters")
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--stage-table", type=Path, default=Path("data/categorized/question_stages.csv"))
    parser.add_argument("--out", type=Path, default=Path("models/merged"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, models_dir=args.models, splits_dir=args.splits,
                      stage_table=args.stage_table, out_dir=args.out)


def _summary(manifest: dict) -> None:
    print(f"merge: {manifest['approach']} -> {len(manifest['models'])} merged model(s) "
          f"({', '.join(manifest['models'])}), candidate {manifest['merged_sha256'][:12]}")


if __name__ == "__main__":
    raise SystemExit(main())
