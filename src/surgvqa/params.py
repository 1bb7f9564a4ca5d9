"""Typed, validated parameters: one dataclass per `params.yaml` section.

Every stage reads its own section. A misspelt key, a wrong type or an out-of-range value is an error that
names the key (`params.yaml: split.train: ...`), so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from surgvqa.data.taxonomy import DEFAULT_LLM_PROMPT  # noqa: F401 - re-exported: part of the params API
from surgvqa.typed_config import ParamsError, build

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


DEFAULT_PROMPT_TEMPLATE = "{question}\nQuestion type: {qtype}.{candidates}\nAnswer with the answer only."
DEFAULT_CANDIDATES_TEMPLATE = "\nValid answers: {candidates}."
DEFAULT_DESCRIBE_PROMPT = "Describe the image."


@dataclass
class TinyBaseParams:
    """The embedded tiny Qwen2-VL: sizes, and the short description pretraining that stands in for a real VLM's."""

    vocab_size: int = 1024
    hidden_size: int = 96
    intermediate_size: int = 192
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vision_layers: int = 2
    vision_dim: int = 96
    vision_heads: int = 4
    pretrain_epochs: float = 30.0
    pretrain_learning_rate: float = 3e-3
    pretrain_batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        head_dim, rem = divmod(self.hidden_size, self.heads)
        if rem or head_dim % 4 or self.heads % self.kv_heads:
            raise ParamsError("hidden_size/heads: head_dim must be a whole multiple of 4 and heads a multiple of "
                              f"kv_heads (got hidden_size {self.hidden_size}, heads {self.heads}, kv_heads {self.kv_heads})")
        if self.vision_dim % self.vision_heads:
            raise ParamsError(f"vision_dim: must be divisible by vision_heads, got {self.vision_dim}/{self.vision_heads}")
        if self.pretrain_epochs < 0:
            raise ParamsError(f"pretrain_epochs: must be >= 0, got {self.pretrain_epochs}")


@dataclass
class ModelParams:
    """The base model: `tiny` (built offline) or a Hugging Face id or local path, and how to load it."""

    base: str = "tiny"
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    quantize: Literal["none", "4bit"] = "none"
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    image_pixels: int = 168 * 168
    trust_remote_code: bool = False
    tiny: TinyBaseParams = field(default_factory=TinyBaseParams)

    def __post_init__(self) -> None:
        if self.image_pixels < 56 * 56:
            raise ParamsError(f"image_pixels: must be at least 56*56 = 3136 (Qwen2-VL's minimum), got {self.image_pixels}")


@dataclass
class PromptParams:
    """How a question becomes a prompt; candidate answers come from the training split only."""

    template: str = DEFAULT_PROMPT_TEMPLATE
    candidates_template: str = DEFAULT_CANDIDATES_TEMPLATE
    system: str | None = None
    describe: str = DEFAULT_DESCRIBE_PROMPT

    def __post_init__(self) -> None:
        if "{question}" not in self.template:
            raise ParamsError("template: must contain the placeholder {question}")
        if "{candidates}" not in self.candidates_template:
            raise ParamsError("candidates_template: must contain the placeholder {candidates}")


@dataclass
class LoraParams:
    """LoRA on the language model only: rank, scaling, dropout and the projection names it targets."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ParamsError(f"r and alpha: must be at least 1, got r={self.r}, alpha={self.alpha}")
        _fraction("dropout", self.dropout)
        if not self.target_modules:
            raise ParamsError("target_modules: must name at least one projection")


@dataclass
class SizeTier:
    """Hyperparameters for training sets up to `max_rows` rows (automatic sizing)."""

    max_rows: int
    r: int
    alpha: int
    epochs: float
    batch_size: int
    max_length: int


def _default_tiers() -> list[SizeTier]:
    return [SizeTier(2_000, 8, 16, 6.0, 8, 512), SizeTier(20_000, 16, 32, 3.0, 8, 1024),
            SizeTier(10**9, 32, 64, 2.0, 16, 1024)]


@dataclass
class TrainParams:
    """Supervised fine-tuning of one adapter per training stage, for all three approaches."""

    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    stage_learning_rates: list[float] = field(default_factory=lambda: [5e-5, 3.5e-5, 2.5e-5])
    sequential_learning_rate: float = 5e-5
    baseline_learning_rate: float = 5e-5
    curriculum_replay: float = 0.0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    logging_steps: int = 10
    save_steps: int = 200
    seed: int = 0
    continuity_tolerance: float = 0.10
    auto_size: bool = False
    tiers: list[SizeTier] = field(default_factory=_default_tiers)

    def __post_init__(self) -> None:
        if len(self.stage_learning_rates) != 3 or min(self.stage_learning_rates) <= 0:
            raise ParamsError(f"stage_learning_rates: must be three positive numbers, got {self.stage_learning_rates}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_length < 16:
            raise ParamsError("batch_size and grad_accum: must be >= 1, max_length >= 16")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ParamsError("epochs or max_steps: one must be positive")
        if not 0.0 <= self.curriculum_replay <= 1.0:
            raise ParamsError(f"curriculum_replay: must be a share in [0, 1], got {self.curriculum_replay}")
        if self.continuity_tolerance < 0:
            raise ParamsError(f"continuity_tolerance: must be >= 0, got {self.continuity_tolerance}")
        if [t.max_rows for t in self.tiers] != sorted(t.max_rows for t in self.tiers) or not self.tiers:
            raise ParamsError("tiers: must be a non-empty list sorted by max_rows")


@dataclass
class SanityParams:
    """The overfit check: a few dozen samples, a high learning rate, a loss it must get below."""

    samples: int = 32
    steps: int = 200
    learning_rate: float = 5e-3
    batch_size: int = 8
    max_final_loss: float = 0.3


@dataclass
class TrackingParams:
    """Where MLflow runs go: a local SQLite store by default (open it with `mlflow ui`)."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "surgvqa"


DEFAULT_CONTEXT_TEMPLATE = "Previous context:\n{context}\n\n{prompt}"
DEFAULT_CONTEXT_LINE = "Q: {question}\nA: {answer}"


@dataclass
class EvalParams:
    """How the test split is answered and scored (README: "Evaluation")."""

    decoding: Literal["constrained", "score", "free"] = "constrained"
    modes: list[str] = field(default_factory=lambda: ["sequential", "independent"])
    batch_size: int = 16
    open_max_new_tokens: int = 16
    max_length: int = 4096
    context_template: str = DEFAULT_CONTEXT_TEMPLATE
    context_line: str = DEFAULT_CONTEXT_LINE
    lenient_threshold: float = 0.7
    numeric_tolerance: float = 0.0
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.modes or set(self.modes) - {"sequential", "independent"}:
            raise ParamsError(f"modes: a non-empty list of sequential and/or independent, got {self.modes}")
        if "{context}" not in self.context_template or "{prompt}" not in self.context_template:
            raise ParamsError("context_template: must contain the placeholders {context} and {prompt}")
        if "{question}" not in self.context_line or "{answer}" not in self.context_line:
            raise ParamsError("context_line: must contain the placeholders {question} and {answer}")
        if self.batch_size < 1 or self.open_max_new_tokens < 1:
            raise ParamsError("batch_size and open_max_new_tokens: must be >= 1")
        if not 0 < self.lenient_threshold <= 1 or not 0 < self.confidence < 1:
            raise ParamsError("lenient_threshold: must be in (0, 1]; confidence: in (0, 1)")
        if self.numeric_tolerance < 0 or self.bootstrap_samples < 100:
            raise ParamsError("numeric_tolerance: must be >= 0; bootstrap_samples: >= 100")


@dataclass
class Params:
    """All of params.yaml: one field per section."""

    data: DataParams = field(default_factory=DataParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    categorize: CategorizeParams = field(default_factory=CategorizeParams)
    convert: ConvertParams = field(default_factory=ConvertParams)
    split: SplitParams = field(default_factory=SplitParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    model: ModelParams = field(default_factory=ModelParams)
    prompt: PromptParams = field(default_factory=PromptParams)
    lora: LoraParams = field(default_factory=LoraParams)
    train: TrainParams = field(default_factory=TrainParams)
    sanity: SanityParams = field(default_factory=SanityParams)
    evaluate: EvalParams = field(default_factory=EvalParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)


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
