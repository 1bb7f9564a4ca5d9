"""`prompt`: how a question becomes the user turn, for training and inference alike."""

from __future__ import annotations

from dataclasses import dataclass

from surgvqa.params.typed import ParamsError


@dataclass
class PromptParams:
    """The question's template, how valid answers are listed, the system prompt, the description prompt."""

    template: str  # placeholders {question}, {qtype}, {candidates}
    candidates_template: str  # placeholder {candidates}; left out for questions without a candidate set
    system: str | None  # null keeps the chat template's default system prompt
    describe: str  # the tiny base's description pretraining prompt

    def __post_init__(self) -> None:
        if "{question}" not in self.template:
            raise ParamsError("template: must contain the placeholder {question}")
        if "{candidates}" not in self.candidates_template:
            raise ParamsError("candidates_template: must contain the placeholder {candidates}")
