"""Closed-set decoding: a prefix tree of the candidate answers' token sequences (`prompts.answer_choices`).

A bag of allowed tokens would let the model splice "yes" and "no" pieces into a non-answer; walking a prefix
tree of whole candidates (each closed by the end-of-turn token) makes every finished generation a candidate.
Candidates are tokenized exactly as training appends answers (`answer + <|im_end|>`, no special tokens), so a
constrained answer is a sequence the adapter was trained to produce.
"""

from __future__ import annotations

from surgvqa.model.processor import END_OF_TURN


class CandidateTrie:
    """A prefix tree over token-id sequences; `allowed(prefix)` lists the tokens that keep a prefix on a path."""

    def __init__(self, sequences: dict[str, list[int]]):
        if not sequences:
            raise ValueError("a constrained decoder needs at least one candidate")
        self.root: dict = {}
        self.answers: dict[tuple[int, ...], str] = {}
        self.depth = max(len(ids) for ids in sequences.values())  # tokens the longest candidate needs
        for answer, ids in sequences.items():
            node = self.root
            for t in ids:
                node = node.setdefault(t, {})
            self.answers[tuple(ids)] = answer

    def allowed(self, prefix: list[int]) -> list[int]:
        """Next tokens that extend `prefix` along some candidate; [] once a candidate is complete or off-tree."""
        node = self.root
        for t in prefix:
            node = node.get(t)
            if node is None:
                return []
        return list(node)


def candidate_ids(tokenizer, answer: str) -> list[int]:
    """The token ids training uses for an answer and its end-of-turn token."""
    return tokenizer(answer + END_OF_TURN, add_special_tokens=False).input_ids


def build_tries(tokenizer, choices: dict[str, list[str]]) -> dict[str, CandidateTrie]:
    """One prefix tree per closed-set question."""
    return {q: CandidateTrie({a: candidate_ids(tokenizer, a) for a in answers}) for q, answers in choices.items()}


def prefix_allowed_fn(tries: list[CandidateTrie], prompt_width: int, end_id: int, pad_id: int):
    """The `prefix_allowed_tokens_fn` for one left-padded batch: row i may only walk tries[i]."""

    def allowed(batch_id: int, ids) -> list[int]:
        generated = ids[prompt_width:].tolist()
        if end_id in generated:  # finished: generate() writes padding after the end token
            return [pad_id]
        return tries[batch_id].allowed(generated)

    return allowed
