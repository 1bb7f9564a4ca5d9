"""`categorize`: which backend gives each question its clinical stage, and the LLM backend's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from surgvqa.params.typed import ParamsError, check_fraction


@dataclass
class LLMCategorizerParams:
    """The LLM categorizer: a local path or Hugging Face id, the taxonomy prompt and its generation settings."""

    model: str
    revision: str | None
    prompt: str
    max_new_tokens: int
    temperature: float
    top_p: float
    do_sample: bool
    batch_size: int
    seed: int
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    device: str
    trust_remote_code: bool
    max_unparsed_fraction: float  # share of unique questions whose reply names no stage before categorize fails

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt:
            raise ParamsError("prompt: must contain the placeholder {question}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ParamsError("batch_size and max_new_tokens: must be at least 1")
        if self.temperature <= 0 and self.do_sample:
            raise ParamsError("temperature: must be > 0 when do_sample is true")
        if not 0.0 < self.top_p <= 1.0:
            raise ParamsError(f"top_p: must be in (0, 1], got {self.top_p}")
        check_fraction("max_unparsed_fraction", self.max_unparsed_fraction)


@dataclass
class CategorizeParams:
    """Which backend assigns each question its clinical stage (keyword rules or an LLM)."""

    backend: Literal["keyword", "llm"]
    llm: LLMCategorizerParams
