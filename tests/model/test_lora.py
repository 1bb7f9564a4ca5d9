"""LoRA lands only in the language model; training changes the adapter and nothing else; QLoRA runs on CPU."""

import dataclasses

import pytest
import torch

from surgvqa.errors import SurgvqaError
from surgvqa.model.load import base_record, load_base
from surgvqa.model.lora import (
    check_trainable_is_lora,
    continue_adapter,
    lora_parameter_count,
    new_adapter,
    trainable_names,
)
from surgvqa.model.sft import Collator, Example, encode, image_of


def _batch(tiny_project, processor, n=4):
    ids = sorted(p.stem for p in (tiny_project["raw"] / "images").glob("*.jpg"))[:n]
    examples = [Example(image_of(tiny_project["raw"], i), "Is there text?", a)
                for i, a in zip(ids, "yes no yes no".split())]
    return Collator(processor.tokenizer.pad_token_id)([encode(processor, e, 512) for e in examples])


def _steps(model, batch, n=3, lr=1e-2, eval_between=False):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(n):
        model.train()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        if eval_between:  # an eval forward between steps is what trips bitsandbytes' CPU inference layout
            model.eval()
            with torch.no_grad():
                model(**batch)
    return losses



def _fresh(model, lora, seed=0):
    """A new adapter of the params' rank and scaling, as training attaches one without a size tier."""
    return new_adapter(model, lora, lora.r, lora.alpha, seed)

def test_lora_targets_language_model_only_and_training_leaves_the_base_untouched(tiny_project):
    model, processor = load_base(base_record(tiny_project["base"]), tiny_project["params"].model)
    model = _fresh(model, tiny_project["params"].lora)
    names = trainable_names(model)
    assert names and all("lora_" in n and "language_model" in n for n in names)
    assert not any("visual" in n for n, _ in model.named_parameters() if "lora_" in n)
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _steps(model, _batch(tiny_project, processor))
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= set(names)                      # only adapter weights moved
    assert any("lora_B" in n for n in changed)                    # B starts at zero and must have learned
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)


def test_continuing_needs_is_trainable(tiny_project, tmp_path):
    from peft import PeftModel

    p = tiny_project["params"]
    model, _ = load_base(base_record(tiny_project["base"]), p.model)
    _fresh(model, p.lora).save_pretrained(tmp_path / "a")
    fresh, _ = load_base(base_record(tiny_project["base"]), p.model)
    continued = continue_adapter(fresh, tmp_path / "a")
    assert check_trainable_is_lora(continued) == lora_parameter_count(continued) > 0
    frozen_base, _ = load_base(base_record(tiny_project["base"]), p.model)
    frozen = PeftModel.from_pretrained(frozen_base, str(tmp_path / "a"))  # PEFT's default: is_trainable=False
    with pytest.raises(SurgvqaError, match="is_trainable=True"):
        check_trainable_is_lora(frozen)


def test_qlora_trains_on_cpu_with_vision_and_head_unquantized(tiny_project):
    import bitsandbytes as bnb
    from peft import prepare_model_for_kbit_training

    qlora_model = dataclasses.replace(tiny_project["params"].model, quantize="4bit")
    model, processor = load_base(base_record(tiny_project["base"]), qlora_model)
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all("language_model" in n for n in quantized)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    assert all(m.support_avx512bf16_for_cpu is False for n, m in model.named_modules()
               if isinstance(m, bnb.nn.Linear4bit))
    model = _fresh(prepare_model_for_kbit_training(model, use_gradient_checkpointing=False),
                   tiny_project["params"].lora)
    check_trainable_is_lora(model)
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    losses = _steps(model, _batch(tiny_project, processor), n=3, eval_between=True)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(lora_b[n], p) for n, p in model.named_parameters() if n in lora_b)


def test_a_fresh_adapter_is_the_same_whatever_ran_before(tiny_project):
    """LoRA's A matrices are random: seeded, two runs start from the same adapter (rerun = same weights)."""
    import torch

    from surgvqa.model.load import base_record, load_base

    weights = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever an earlier step left in the global generator
        torch.rand(3)
        model, _ = load_base(base_record(tiny_project["base"]), tiny_project["params"].model)
        lora = _fresh(model, tiny_project["params"].lora, seed=7)
        weights.append({n: p.detach().clone() for n, p in lora.named_parameters() if "lora_A" in n})
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 0
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])
