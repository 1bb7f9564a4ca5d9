"""Constrained decoding and candidate scoring that run each shared prompt prefix once.

generate() with a prefix-tree constraint (what the reference does) wastes two things on this workload:
- The questions about one image share a long token prefix: the system turn, the image tokens and, in
  context mode, the earlier stages' context. Here its keys and values are computed once per image and
  copied to each question's row; only each question's own tail runs per row.
- Where the candidate tree has a single way on (the end-of-turn token after "yes", the rest of a
  multi-token word), the greedy choice is forced and needs no logits. A forward pass runs only while some
  row still has a choice to make.

The choice rule is generate()'s greedy one under `prefix_allowed_tokens_fn`: the highest logit among the
allowed tokens, ties to the lowest id. The shared prefixes get the model's own multimodal RoPE positions
(`get_rope_index`); everything after them is text, whose positions continue one by one from the prefix's
highest, as in generate(). So the answers equal the reference's up to floating-point rounding (the prefix
runs in another batch shape): identical in float32 here (`tests/infer/test_shared_prefix.py`,
`tests/infer/test_engine.py`, `bench/bench_engine.py`); in bfloat16 a near-tie can flip.

Scoring shares more: the candidates of one question share its whole prompt, which runs once, and each
candidate runs as a continuation of it.

A row's layout is [padding][prefix][padding][tail][padding][step 1 tokens]...: the padding is masked, so no
token attends to it, and positions are passed explicitly, so the model never derives them from the layout.
"""

from __future__ import annotations

from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.infer.constrained import CandidateTrie, candidate_ids
from surgvqa.infer.generate import ImageCache, _device, expanded_texts


class _Row:
    """One question being answered: where it stands in its candidate tree."""

    def __init__(self, trie: CandidateTrie):
        self.trie, self.node = trie, trie.root
        self.path: list[int] = []  # tokens chosen so far
        self.pending: list[int] = []  # chosen tokens the model has not seen yet

    @property
    def done(self) -> bool:
        return not self.node

    def take(self, token: int) -> None:
        """Take `token`, then every forced token after it, stopping at a choice or a finished answer."""
        while True:
            self.path.append(token)
            self.pending.append(token)
            self.node = self.node[token]
            if len(self.node) != 1:
                return
            token = next(iter(self.node))


def common_prefix(seqs: list[list[int]]) -> int:
    """How many tokens all sequences start with, leaving each at least one of its own (its logits are needed)."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        n = next((k for k in range(n) if s[k] != first[k]), n)
    return n


def _left_padded(seqs: list[list[int]], pad: int, device):
    """(ids, mask) tensors [rows, longest], each sequence right-aligned."""
    import torch

    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def _text_positions(starts: list[int], lengths: list[int], width: int, device):
    """[3, rows, width] positions for right-aligned text blocks counting up from each row's start."""
    import torch

    pos = torch.zeros((3, len(starts), width), dtype=torch.long)
    for i, (start, n) in enumerate(zip(starts, lengths)):
        if n:
            pos[:, i, width - n:] = torch.arange(start, start + n)
    return pos.to(device)


def _choose(rows: list[_Row], logits) -> None:
    """Greedy step for the rows still choosing: the best allowed token, as generate() picks it."""
    import torch

    for row, scores in zip(rows, logits.float()):
        if row.done:
            continue
        allowed = torch.tensor(sorted(row.node), device=scores.device)  # sorted: ties go to the lowest id
        options = scores[allowed]
        # All allowed logits -inf (an fp16 overflow): generate()'s masked argmax then takes the lowest allowed id.
        row.take(int(allowed[options.argmax()]) if torch.isfinite(options).any() else int(allowed[0]))


class SharedPrefixBatch:
    """The key/value cache of a batch of prompts in which each image's common prefix ran once.

    After construction `tails` holds each row's unfed prompt tokens; `feed` runs any tokens per row and returns
    each row's next-token logits (a row fed nothing returns logits of no use).
    """

    def __init__(self, model, processor, prompts: list[tuple[Path, str]], system: str | None,
                 cache: ImageCache | None = None, share_whole_prompts: bool = False, check_lengths=None):
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        self.model, self.pad, self.device = model, processor.tokenizer.pad_token_id, _device(model)
        seen = (cache or ImageCache(0)).features(model, processor, [img for img, _ in prompts])
        ids = processor.tokenizer(expanded_texts(processor, prompts, system, seen)).input_ids
        if check_lengths is not None:  # before any forward pass, so an over-long prompt fails with its error
            check_lengths([len(row) for row in ids])
        # Rows of one image share their common prefix; with share_whole_prompts only identical prompts group
        # (scoring several candidates of one question), so the prefix is the whole prompt but its last token.
        groups: dict[object, list[int]] = {}
        for i, pair in enumerate(prompts):
            groups.setdefault(pair if share_whole_prompts else pair[0], []).append(i)
        images = [prompts[members[0]][0] for members in groups.values()]
        heads = [ids[members[0]][: common_prefix([ids[i] for i in members])] for members in groups.values()]
        group_of = [0] * len(prompts)
        for k, members in enumerate(groups.values()):
            for i in members:
                group_of[i] = k
        self.tails = [ids[i][len(heads[group_of[i]]):] for i in range(len(prompts))]
        vision_ids = {t for t in processor.image_token_ids + processor.video_token_ids if t is not None}
        if any(not vision_ids.isdisjoint(t) for t in self.tails):
            raise SurgvqaError("an image token fell outside the shared prefix; this is a bug")

        # The shared prefixes, one row per image, with the model's own multimodal positions.
        head_ids, head_mask = _left_padded(heads, self.pad, self.device)
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PeftModel or bare base
        head_pos, _ = inner.model.get_rope_index(
            head_ids, mm_token_type_ids=torch.tensor(processor.create_mm_token_type_ids(head_ids.tolist()),
                                                     device=self.device),
            image_grid_thw=torch.cat([seen[img][0] for img in images]).to(self.device), attention_mask=head_mask)
        self.kv = model(input_ids=head_ids, attention_mask=head_mask, position_ids=head_pos,
                        mm_encoder_outputs={"image": BaseModelOutputWithPooling(
                            pooler_output=tuple(seen[img][1] for img in images))},
                        use_cache=True, logits_to_keep=1).past_key_values
        index = torch.tensor(group_of, device=self.device)
        self.kv.reorder_cache(index)  # each row gets its image's keys and values
        self.mask = head_mask[index]
        self.next_pos = [int(head_pos[:, k].max()) + 1 for k in group_of]

    def feed(self, tokens: list[list[int]], keep: int = 1):
        """Run `tokens[i]` after row i's sequence so far. Returns [rows, vocabulary] logits after each row's
        last token, or with `keep` > 1 [rows, keep, vocabulary] for each row's last `keep` tokens."""
        import torch

        block, block_mask = _left_padded(tokens, self.pad, self.device)
        self.mask = torch.cat([self.mask, block_mask], dim=1)
        positions = _text_positions(self.next_pos, list(map(len, tokens)), block.shape[1], self.device)
        self.next_pos = [p + len(t) for p, t in zip(self.next_pos, tokens)]
        logits = self.model(input_ids=block, attention_mask=self.mask, position_ids=positions,
                            past_key_values=self.kv, use_cache=True, logits_to_keep=keep).logits
        return logits[:, -1] if keep == 1 else logits


def decode_constrained(model, processor, prompts: list[tuple[Path, str]], system: str | None,
                       tries: list[CandidateTrie], cache: ImageCache | None = None) -> list[str]:
    """Greedy answers for (image, prompt) pairs, row i kept to tries[i]: equal to generate() under the same
    constraint, with each image's shared prefix computed once."""
    if len(tries) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(tries)} candidate trees")
    batch = SharedPrefixBatch(model, processor, prompts, system, cache)
    rows = [_Row(t) for t in tries]
    feed = batch.tails
    while True:  # a pass for the tails, then one for each token some row still has to choose
        logits = batch.feed(feed)
        for r in rows:
            r.pending = []
        _choose(rows, logits)
        if all(r.done for r in rows):
            break
        feed = [[] if r.done else r.pending for r in rows]
    answers = []
    for r in rows:
        if tuple(r.path) not in r.trie.answers:
            raise SurgvqaError(f"constrained decoding stopped off its candidates ({r.path}); this is a bug")
        answers.append(r.trie.answers[tuple(r.path)])
    return answers


def score_candidates(model, processor, pairs: list[tuple[Path, str, str]], system: str | None, max_length: int,
                     cache: ImageCache | None = None) -> list[float]:
    """Sum of the log-probabilities of each (image, prompt, candidate)'s answer tokens.

    The candidates of one question share its prompt, which runs once; each candidate is appended as training
    appends answers (`candidate_ids`). Only the last few positions get logits (a full [rows, length,
    vocabulary] tensor is gigabytes on the real model).
    """
    import torch

    from surgvqa.model.sft import IGNORE_INDEX

    answers = [candidate_ids(processor.tokenizer, cand) for _, _, cand in pairs]

    def check(prompt_lengths: list[int]) -> None:
        for n, ans in zip(prompt_lengths, answers):
            if n + len(ans) > max_length:
                raise SurgvqaError(f"a scored sequence is {n + len(ans)} tokens, above evaluate.max_length="
                                   f"{max_length}: raise it or lower model.image_pixels")

    batch = SharedPrefixBatch(model, processor, [(img, prompt) for img, prompt, _ in pairs], system, cache,
                              share_whole_prompts=True, check_lengths=check)
    keep = max(map(len, answers)) + 1  # the prompt's last position predicts the first answer token
    logits = batch.feed([tail + ans for tail, ans in zip(batch.tails, answers)], keep=keep)
    targets = torch.tensor([[IGNORE_INDEX] * (keep - 1 - len(a)) + a for a in answers], device=logits.device)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * (targets != IGNORE_INDEX)).sum(dim=1).tolist()
