"""Tiny randomly initialised language models built offline, so tests go through the real transformers paths."""

from __future__ import annotations

import re
from pathlib import Path

from surgvqa.params.schema import load_params

REPO = Path(__file__).resolve().parents[1]

CHAT_TEMPLATE = ("{% for m in messages %}<user> {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def build_tiny_causal_lm(out_dir: Path, corpus: list[str], digits: bool = True) -> Path:
    """A 2-layer Qwen2 causal LM with a word-level tokenizer trained on `corpus` and the taxonomy prompt; with
    `digits` False its vocabulary holds no digit, so no reply it gives can name a stage."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    taxonomy_prompt = load_params(REPO / "params.yaml").categorize.llm.prompt
    specials = ["<unk>", "<pad>", "<eos>", "<user>", "<assistant>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [taxonomy_prompt, "Stage: 1 2 3", *corpus]
    if not digits:
        texts = [re.sub(r"[0-9]", "", t) for t in texts]
    tok.train_from_iterator(texts,
                            trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<eos>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
