"""Prompts for supervised fine-tuning and inference: the question, its type and, for closed-set questions, the
valid answers. Candidate sets come from the training split only, so nothing about val or test leaks in."""

from __future__ import annotations

from collections import defaultdict

from surgvqa.data.questions import canonical_question, question_type
from surgvqa.params.prompt import PromptParams

# How each answer type is named in the prompt; multi-valued types say how to join several answers.
QTYPE_WORDING = {
    "yes_no": "yes/no",
    "single_choice": "single choice",
    "multiple_choice": "multiple choice, separate several with ;",
    "colour": "colour, separate several with ;",
    "location": "location, separate several with ;",
    "count": "count",
    "generic": "open",
}


def answer_atoms(answer: str) -> list[str]:
    """The single values in an answer: `"red; pink"` -> `["red", "pink"]`; sizes join without a space."""
    return [a.strip() for a in answer.split(";") if a.strip()]


def answer_choices(train_rows: list[dict]) -> dict[str, list[str]]:
    """For each closed-set catalogue question, the distinct whole answers training gives it, sorted (what a
    constrained decoder may produce)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for row in train_rows:
        if question_type(row["question"]) != "generic":
            seen[canonical_question(row["question"])].add(row["answer"])
    return {q: sorted(answers) for q, answers in sorted(seen.items())}


def candidate_sets(train_rows: list[dict]) -> dict[str, list[str]]:
    """For each closed-set catalogue question, the sorted single values its training answers use (what the
    prompt lists as valid answers)."""
    return {q: sorted({value for answer in answers for value in answer_atoms(answer)})
            for q, answers in answer_choices(train_rows).items()}


def render_prompt(question: str, candidates: dict[str, list[str]], prompt: PromptParams) -> str:
    """The user text for one question (the image goes before it in the chat message)."""
    qtype = question_type(question)
    values = candidates.get(canonical_question(question), [])
    listing = prompt.candidates_template.format(candidates=", ".join(values)) if values else ""
    return prompt.template.format(question=question, qtype=QTYPE_WORDING[qtype], candidates=listing)
