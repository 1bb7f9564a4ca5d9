"""The `llm` categorization backend: a causal LM reads the taxonomy prompt once per unique question.

Kvasir-VQA has 19 unique questions among 58,849 rows, so the model sees each unique question exactly once,
never each row. Replies are parsed `Stage:\\s*(\\d+)`, then any digit 1-3; anything else becomes stage 2 and is
counted as unparsed, and the categorize stage fails when they exceed `categorize.llm.max_unparsed_fraction`,
so a default can never hide a broken model or prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tqdm import tqdm

from surgvqa.params.categorize import LLMCategorizerParams

_STAGE_LINE = re.compile(r"Stage:\s*(\d+)")
_ANY_STAGE_DIGIT = re.compile(r"[1-3]")
FALLBACK_STAGE = 2


@dataclass(frozen=True)
class StageReply:
    """The model's raw reply to one question and the stage read from it."""

    question: str
    stage: int
    parsed: bool
    raw_reply: str


def parse_stage(reply: str) -> tuple[int, bool]:
    """(stage, parsed) from a reply; unparseable replies give (2, False)."""
    m = _STAGE_LINE.search(reply)
    if m and 1 <= int(m.group(1)) <= 3:
        return int(m.group(1)), True
    m = _ANY_STAGE_DIGIT.search(reply)
    if m:
        return int(m.group(0)), True
    return FALLBACK_STAGE, False


def _prompt_text(tokenizer, prompt: str) -> str:
    # Instruction-tuned models expect their chat template; a bare causal LM gets the prompt as is.
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def llm_stages(questions: list[str], llm: LLMCategorizerParams) -> list[StageReply]:
    """Ask the model once per unique question, in batches of `llm.batch_size`; order follows `questions`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from surgvqa.device import pick_device, pick_dtype

    unique = list(dict.fromkeys(questions))
    device = pick_device(llm.device)
    tokenizer = AutoTokenizer.from_pretrained(llm.model, revision=llm.revision, trust_remote_code=llm.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        llm.model, revision=llm.revision, trust_remote_code=llm.trust_remote_code,
        dtype=pick_dtype(llm.dtype, device), use_safetensors=True,
    ).to(device).eval()
    tokenizer.padding_side = "left"  # decoder-only: pad on the left so every reply starts right after its prompt
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(llm.seed)

    replies: list[StageReply] = []
    with tqdm(total=len(unique), desc="categorize (llm)", unit="question") as bar:
        for start in range(0, len(unique), llm.batch_size):
            batch = unique[start:start + llm.batch_size]
            # replace, not format: a custom prompt may hold other braces
            texts = [_prompt_text(tokenizer, llm.prompt.replace("{question}", q)) for q in batch]
            # A chat template already wrote the special tokens; adding them again would double the BOS.
            enc = tokenizer(texts, return_tensors="pt", padding=True,
                            add_special_tokens=not getattr(tokenizer, "chat_template", None)).to(device)
            gen = {"do_sample": llm.do_sample, "max_new_tokens": llm.max_new_tokens,
                   "pad_token_id": tokenizer.pad_token_id}
            if llm.do_sample:
                gen.update(temperature=llm.temperature, top_p=llm.top_p)
            with torch.inference_mode():
                out = model.generate(**enc, **gen)
            decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for q, text in zip(batch, decoded):
                stage, parsed = parse_stage(text)
                replies.append(StageReply(q, stage, parsed, text))
            bar.update(len(batch))
    return replies
