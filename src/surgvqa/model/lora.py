"""LoRA on the language model only, and parameter accounting for checks and tests.

The target is a regular expression anchored on `language_model`, so the vision tower and its merger never
receive an adapter even if a projection name (such as `qkv` or `proj`) exists in both.
"""

from __future__ import annotations

import re
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.params.lora import LoraParams


def target_regex(modules: list[str]) -> str:
    """A PEFT target regex matching the named projections inside the language model only."""
    names = "|".join(re.escape(m) for m in modules)
    return rf"^(.*\.)?language_model\..*\.({names})$"


def new_adapter(model, lora: LoraParams, r: int, alpha: int, seed: int):
    """Wrap `model` with a fresh LoRA adapter (named `default`) of rank `r` and scaling `alpha` (params or a
    size tier), seeded; only its A/B matrices are trainable."""
    import torch
    from peft import LoraConfig, get_peft_model

    # The A matrices are drawn here, before the Trainer seeds anything: without this, every run (and every
    # test order) starts from another adapter.
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=lora.dropout,
                        target_modules=target_regex(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    if lora_parameter_count(peft_model) == 0:
        raise SurgvqaError(f"lora.target_modules {lora.target_modules} matched no layer of the language model")
    return peft_model


def continue_adapter(model, adapter_dir: Path):
    """Load a trained adapter to keep training it: `is_trainable=True`, or PEFT freezes it (0 trainable)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    check_trainable_is_lora(peft_model)
    return peft_model


def lora_parameter_count(model) -> int:
    """Number of LoRA parameters (trainable or not)."""
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def trainable_names(model) -> list[str]:
    """Names of the parameters that will receive gradients."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def check_trainable_is_lora(model) -> int:
    """The trainable set must be exactly the LoRA matrices; returns the trainable count."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = lora_parameter_count(model)
    stray = [n for n in trainable_names(model) if "lora_" not in n]
    if stray:
        raise SurgvqaError(f"{len(stray)} non-LoRA parameters would train (first: {stray[0]}): "
                           "the base must stay frozen")
    if trainable != lora or lora == 0:
        raise SurgvqaError(f"{trainable} trainable parameters but {lora} LoRA parameters: an adapter loaded for "
                           "training must use is_trainable=True")
    return trainable
