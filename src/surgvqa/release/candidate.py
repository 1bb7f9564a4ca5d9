"""A merged candidate (models/merged) loaded as it is released: its merged models, its frozen serving settings,
and the evaluation engine answering with them exactly as it answers with base + adapters.

The `evaluate_merged` stage and the registered MLflow model (pyfunc.py) both answer through `load_candidate`
and `answer`, so what the gate measured is what `models:/<name>@champion` serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from surgvqa.io import read_json
from surgvqa.model.lineage import LINEAGE_FILE
from surgvqa.params.categorize import CategorizeParams
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.prompt import PromptParams
from surgvqa.params.typed import build
from surgvqa.release.files import check_candidate, read_manifest


@dataclass(frozen=True)
class Candidate:
    """The loaded release: the engine's answerer over the merged models, and the settings frozen at merge time."""

    manifest: dict
    answerer: object  # infer.engine.Answerer over MergedModels
    route: dict[int, str]  # stage -> merged model name
    evaluate: EvalParams
    prompt: PromptParams
    categorize: CategorizeParams

    @property
    def mode(self) -> str:
        return self.manifest["mode"]


def load_merged_model(folder: Path, dtype: str, device: str):
    """One merged folder as a plain Qwen2-VL (safetensors only, no remote code, no adapters)."""
    from transformers import Qwen2VLForConditionalGeneration

    from surgvqa.device import pick_device, pick_dtype

    target = pick_device(device)
    return Qwen2VLForConditionalGeneration.from_pretrained(
        str(folder), dtype=pick_dtype(dtype, target), use_safetensors=True, trust_remote_code=False,
        device_map={"": str(target)}).eval()


def load_candidate(merged_dir: Path, device: str) -> Candidate:
    """The candidate in models/merged, its files and manifest checked against merged_sha256, ready to answer on
    `device`."""
    from surgvqa.infer.engine import MergedModels, make_answerer
    from surgvqa.model.processor import load_processor

    manifest = read_manifest(merged_dir)
    check_candidate(merged_dir, manifest)
    serving = manifest["serving"]
    dtypes = {name: read_json(merged_dir / name / LINEAGE_FILE)["merge"]["dtype"] for name in manifest["models"]}
    models = MergedModels({name: load_merged_model(merged_dir / name, dtypes[name], device)
                           for name in manifest["models"]})
    first = merged_dir / next(iter(manifest["models"]))
    image_pixels = serving["image_pixels"]
    processor = load_processor(first, image_pixels, None, False)
    answerer = make_answerer(models, processor, serving["choices"], serving["prompt_candidates"])
    return Candidate(manifest, answerer, {int(s): n for s, n in manifest["route"].items()},
                     build(EvalParams, serving["evaluate"], "evaluate"),
                     build(PromptParams, serving["prompt"], "prompt"),
                     build(CategorizeParams, serving["categorize"], "categorize"))


def stages_of(candidate: Candidate, questions: list[str]) -> dict[str, int]:
    """Each question's stage: the release's frozen table, else the categorizer training used."""
    from surgvqa.infer.routing import route

    return route(questions, candidate.manifest["serving"]["stage_table"], candidate.categorize)


def answer(candidate: Candidate, items: list, desc: str = "merged") -> list[str]:
    """The candidate's answers to engine Items, in the release's mode."""
    from surgvqa.infer.engine import answer_items

    return answer_items(candidate.answerer, items, candidate.route, candidate.mode, candidate.evaluate,
                        candidate.prompt, desc=desc)
