"""A short description pretraining for the tiny base, so it stands in for a pretrained VLM.

A randomly initialised vision tower has never learned to see; a LoRA on the language model alone cannot teach
it (the tower stays frozen). Real Qwen2-VL arrives pretrained on captions, so the tiny base gets the same kind
of start: a few epochs of full-parameter training to describe each *training* image. The descriptions list
the image's facts by field name ("procedure: colonoscopy; polyp count: 2; ..."), rendered from the training
split's metadata. They are not question/answer pairs: no question text appears, so the adapters still have
to learn which fact a question asks for and how to say it. Validation and test images are never seen.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from surgvqa.data import questions as Q
from surgvqa.errors import SurgvqaError

# The field name each catalogue question's answer appears under in a description, in description order.
DESCRIPTION_FIELDS = (
    (Q.Q_PROCEDURE, "procedure"), (Q.Q_TEXT, "text"), (Q.Q_BOX_ARTEFACT, "box"), (Q.Q_ANY_FINDING, "finding"),
    (Q.Q_FINDING_COUNT, "findings"), (Q.Q_ABNORMALITIES, "abnormalities"), (Q.Q_ABNORMALITY_COLOUR, "colour"),
    (Q.Q_ABNORMALITY_LOCATION, "at"), (Q.Q_EASY_TO_DETECT, "visible"), (Q.Q_POLYP_COUNT, "polyps"),
    (Q.Q_POLYP_TYPE, "polyp type"), (Q.Q_POLYP_SIZE, "polyp size"), (Q.Q_POLYPS_REMOVED, "removed"),
    (Q.Q_LANDMARKS, "landmarks"), (Q.Q_LANDMARK_COLOUR, "landmark colour"), (Q.Q_LANDMARK_LOCATION, "landmark at"),
    (Q.Q_INSTRUMENTS, "instruments"), (Q.Q_INSTRUMENT_COUNT, "instrument count"),
    (Q.Q_INSTRUMENT_LOCATION, "instrument at"),
)


def describe_images(train_rows: list[dict]) -> dict[str, str]:
    """One description per training image id, fields in a fixed order; images without catalogue facts are left out."""
    facts: dict[str, dict[str, str]] = defaultdict(dict)
    for row in train_rows:
        facts[row["img_id"]][row["question"]] = row["answer"]
    out = {}
    for img_id, answers in facts.items():
        parts = [f"{name}: {answers[q]}" for q, name in DESCRIPTION_FIELDS if q in answers]
        if parts:
            out[img_id] = "; ".join(parts)
    return out


def pretrain(model_dir: Path, raw_dir: Path, descriptions: dict[str, str], prompt: str, epochs: float,
             learning_rate: float, batch_size: int, seed: int, log_dir: Path) -> dict:
    """Full-parameter training of the saved tiny model on (image, prompt -> description); saves in place."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration, Trainer, TrainingArguments

    from surgvqa.model.processor import load_processor
    from surgvqa.model.sft import Collator, Example, SFTDataset, image_of

    # The tiny base was just built here from our own code: no Hub revision, no remote code.
    processor = load_processor(model_dir, _pixels(model_dir), revision=None, trust_remote_code=False)
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
    examples = [Example(image_of(raw_dir, i), prompt, text) for i, text in sorted(descriptions.items())]
    args = TrainingArguments(output_dir=str(log_dir), num_train_epochs=epochs, learning_rate=learning_rate,
                             per_device_train_batch_size=batch_size, lr_scheduler_type="cosine", warmup_steps=0.05,
                             logging_steps=0.05, logging_nan_inf_filter=False, save_strategy="no",
                             report_to="none", seed=seed,
                             remove_unused_columns=False, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=SFTDataset(examples, processor, max_length=4096),
                      data_collator=Collator(processor.tokenizer.pad_token_id))
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if not all(math.isfinite(x) for x in losses):  # a diverged base must not pass for a pretrained one
        raise SurgvqaError(f"the tiny base's description pretraining diverged (losses {losses}): lower "
                           "model.tiny.pretrain_learning_rate")
    model.save_pretrained(model_dir, safe_serialization=True)
    return {"images": len(examples), "epochs": epochs, "steps": result.global_step,
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None}


def _pixels(model_dir: Path) -> int:
    import json

    size = json.loads((model_dir / "processor_config.json").read_text())["image_processor"]["size"]
    return int(size["longest_edge"])
