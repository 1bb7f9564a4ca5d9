"""Typed, validated parameters: one dataclass per `params.yaml` section.

Every stage reads its own section. A misspelt key, a wrong type or an out-of-range value is an error that
names the key (`params.yaml: split.train: ...`), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from surgvqa.errors import SurgvqaError

DEFAULT_LLM_PROMPT = """You are a medical AI assistant. Categorize the following question into one of three clinical stages:

STAGE 1 - INITIAL ASSESSMENT: Quality control, procedure type identification, artifact detection
Examples:
- "What type of procedure is shown in the image?"
- "Is there any text visible in the image?"
- "Are there any artifacts present?"
- "What is the image quality?"

STAGE 2 - FINDINGS IDENTIFICATION: Abnormalities, instruments, anatomical landmarks
Examples:
- "What abnormality is visible?"
- "Where is the polyp located?"
- "What instruments are present?"
- "Describe the anatomical landmarks"

STAGE 3 - CLINICAL CONTEXT: Diagnosis, reasoning, relationships between findings
Examples:
- "What is the diagnosis?"
- "What treatment is recommended?"
- "Have all polyps been removed?"
- "What is the clinical significance?"

Question: {question}

Respond with only: Stage: [1, 2, or 3]"""


class ParamsError(SurgvqaError):
    """A params.yaml value that is missing, misspelt, of the wrong type or out of range."""


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ParamsError(f"{name}: must be between 0 and 1, got {value}")


@dataclass
class SampleParams:
    """The embedded synthetic sample: how many images and which seed (same values, same bytes)."""

    images: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ParamsError(f"images: must be at least 1, got {self.images}")


@dataclass
class DataParams:
    """Where the raw Kvasir-VQA layout lives and how to make it when it is missing."""

    raw_dir: str = "data/raw"
    sample: SampleParams = field(default_factory=SampleParams)


@dataclass
class IngestParams:
    """Ingest: the share of bad rows (quarantined) above which the stage fails."""

    max_bad_fraction: float = 0.05

    def __post_init__(self) -> None:
        _fraction("max_bad_fraction", self.max_bad_fraction)


@dataclass
class LLMCategorizerParams:
    """The LLM categorizer: a local path or Hugging Face id and the generation settings of the taxonomy prompt."""

    model: str = "Qwen/Qwen2.5-7B-Instruct"
    revision: str | None = None
    prompt: str = DEFAULT_LLM_PROMPT
    max_new_tokens: int = 50
    temperature: float = 0.1
    top_p: float = 0.9
    do_sample: bool = True
    batch_size: int = 8
    seed: int = 0
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt:
            raise ParamsError("prompt: must contain the placeholder {question}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ParamsError("batch_size and max_new_tokens: must be at least 1")
        if self.temperature <= 0 and self.do_sample:
            raise ParamsError("temperature: must be > 0 when do_sample is true")
        if not 0.0 < self.top_p <= 1.0:
            raise ParamsError(f"top_p: must be in (0, 1], got {self.top_p}")


@dataclass
class CategorizeParams:
    """Which backend assigns each question its clinical stage."""

    backend: Literal["keyword", "llm"] = "keyword"
    llm: LLMCategorizerParams = field(default_factory=LLMCategorizerParams)


@dataclass
class ConvertParams:
    """Convert: the share of malformed inline records (reported) above which the stage fails."""

    max_bad_fraction: float = 0.0

    def __post_init__(self) -> None:
        _fraction("max_bad_fraction", self.max_bad_fraction)


@dataclass
class SplitParams:
    """Image-level split ratios (they must sum to 1) and the shuffle seed."""

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            _fraction(name, getattr(self, name))
            if getattr(self, name) == 0:  # validation expects all three splits
                raise ParamsError(f"{name}: must be above 0")
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ParamsError(f"train + val + test: must sum to 1, got {self.train + self.val + self.test}")


@dataclass
class StageShareBounds:
    """Allowed [min, max] share of QA rows per stage in every split."""

    stage_1: list[float] = field(default_factory=lambda: [0.2, 0.6])
    stage_2: list[float] = field(default_factory=lambda: [0.3, 0.75])
    stage_3: list[float] = field(default_factory=lambda: [0.02, 0.25])

    def __post_init__(self) -> None:
        for name in ("stage_1", "stage_2", "stage_3"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
                raise ParamsError(f"{name}: must be [min, max] with 0 <= min <= max <= 1, got {lo_hi}")

    def for_stage(self, stage: int) -> tuple[float, float]:
        """The (min, max) bounds of one stage."""
        lo, hi = getattr(self, f"stage_{stage}")
        return float(lo), float(hi)


@dataclass
class ValidateParams:
    """The Great Expectations suite's bounds."""

    stage_share: StageShareBounds = field(default_factory=StageShareBounds)


@dataclass
class Params:
    """All of params.yaml: one field per section."""

    data: DataParams = field(default_factory=DataParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    categorize: CategorizeParams = field(default_factory=CategorizeParams)
    convert: ConvertParams = field(default_factory=ConvertParams)
    split: SplitParams = field(default_factory=SplitParams)
    validate: ValidateParams = field(default_factory=ValidateParams)


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty section (`ingest:` with nothing under it) takes the defaults
            value = {}
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ParamsError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ParamsError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types; errors name the full key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    dotted = (prefix + ".") if prefix else ""
    unknown = sorted(set(values) - names)
    if unknown:
        raise ParamsError(f"{dotted}{unknown[0]}: unknown key (known keys: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], dotted + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ParamsError as e:
        raise ParamsError(f"{dotted}{e}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate params.yaml; missing sections and keys take the documented defaults."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root or pass --params PATH")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    try:
        return build(Params, raw)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
