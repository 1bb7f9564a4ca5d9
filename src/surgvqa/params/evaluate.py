"""`evaluate`: how the test split is answered and scored (README: "Evaluation")."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.names import Decoding, EvalMode
from surgvqa.params.typed import ParamsError


@dataclass
class EvalParams:
    """Decoding, modes and batching of the engine; matching tolerances, bootstrap and confidence of the metrics."""

    decoding: Decoding  # closed-set questions: constrained | score | free
    modes: list[EvalMode]  # the first is the headline
    batch_size: int
    open_max_new_tokens: int  # open questions generate freely up to this many tokens
    max_length: int  # the longest sequence score mode may build
    context_template: str  # placeholders {context} and {prompt}
    context_line: str  # one earlier (question, predicted answer); placeholders {question} and {answer}
    lenient_threshold: float
    numeric_tolerance: float
    bootstrap_samples: int
    confidence: float
    seed: int

    def __post_init__(self) -> None:
        if not self.modes or len(set(self.modes)) != len(self.modes):
            raise ParamsError(f"modes: a non-empty list of distinct modes, got {self.modes}")
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
