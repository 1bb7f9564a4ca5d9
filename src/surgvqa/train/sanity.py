"""`surgvqa sanity-overfit`: can a fresh adapter memorise a few dozen examples?

If it cannot, something upstream is broken, most often the label mask (loss on the prompt, or on nothing).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from surgvqa.io import read_jsonl
from surgvqa.model.prompts import candidate_sets
from surgvqa.params import Params
from surgvqa.train.approaches import STAGES
from surgvqa.train.stage import stage_examples


def sanity_overfit(params: Params, splits_dir: Path, raw_dir: Path, base_dir: Path) -> dict:
    """Train a fresh LoRA for `sanity.steps` steps on `sanity.samples` training rows; pass below the threshold."""
    from transformers import Trainer, TrainingArguments

    from surgvqa.model.base import base_record, load_base
    from surgvqa.model.lora import new_adapter
    from surgvqa.model.sft import Collator, SFTDataset

    s = params.sanity
    rows = read_jsonl(splits_dir / "train.jsonl")
    examples = stage_examples(rows, STAGES, raw_dir, candidate_sets(rows), params)[: s.samples]
    model, processor = load_base(base_record(base_dir), params.model)
    model = new_adapter(model, params.lora, seed=params.train.seed)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, max_steps=s.steps, learning_rate=s.learning_rate,
                                 per_device_train_batch_size=s.batch_size, logging_steps=max(1, s.steps // 20),
                                 lr_scheduler_type="constant", save_strategy="no", report_to="none",
                                 seed=params.train.seed, remove_unused_columns=False, dataloader_pin_memory=False)
        trainer = Trainer(model=model, args=args, data_collator=Collator(processor.tokenizer.pad_token_id),
                          train_dataset=SFTDataset(examples, processor, params.train.max_length, params.prompt.system))
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"samples": len(examples), "steps": s.steps, "first_loss": losses[0], "final_loss": losses[-1],
            "threshold": s.max_final_loss, "passed": losses[-1] < s.max_final_loss}
