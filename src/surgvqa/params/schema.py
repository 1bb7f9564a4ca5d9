"""The whole params.yaml: one field per section, for checking the file at once (`surgvqa params check`, the
tests). Stages never load this: each loads only the sections its entry point declares (typed.load_sections)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from surgvqa.params.categorize import CategorizeParams
from surgvqa.params.convert import ConvertParams
from surgvqa.params.evaluate import EvalParams
from surgvqa.params.gate import GateParams
from surgvqa.params.ingest import IngestParams
from surgvqa.params.launch import LaunchParams
from surgvqa.params.lora import LoraParams
from surgvqa.params.merge import MergeParams
from surgvqa.params.model import ModelParams
from surgvqa.params.promote import PromoteParams
from surgvqa.params.prompt import PromptParams
from surgvqa.params.release import ReleaseParams
from surgvqa.params.sample import SampleParams
from surgvqa.params.sanity import SanityParams
from surgvqa.params.split import SplitParams
from surgvqa.params.tracking import TrackingParams
from surgvqa.params.train import TrainParams
from surgvqa.params.typed import ParamsError, build, read_params_file
from surgvqa.params.validate import ValidateParams


@dataclass
class Params:
    """All of params.yaml: one field per section."""

    sample: SampleParams
    ingest: IngestParams
    categorize: CategorizeParams
    convert: ConvertParams
    split: SplitParams
    validate: ValidateParams
    model: ModelParams
    prompt: PromptParams
    lora: LoraParams
    train: TrainParams
    sanity: SanityParams
    evaluate: EvalParams
    release: ReleaseParams
    merge: MergeParams
    gate: GateParams
    promote: PromoteParams
    tracking: TrackingParams
    launch: LaunchParams


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and check every section of params.yaml; a missing or unknown section or key is an error."""
    raw = read_params_file(path)
    try:
        return build(Params, raw)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
