"""`surgvqa sanity-overfit`: can a fresh adapter memorise a few dozen examples?

If it cannot, something upstream is broken, most often the label mask (loss on the prompt, or on nothing).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from surgvqa import entry
from surgvqa.data.raw import RAW_DIR
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl
from surgvqa.model.prompts import candidate_sets
from surgvqa.names import STAGE_IDS
from surgvqa.params.lora import LoraParams
from surgvqa.params.model import ModelParams
from surgvqa.params.prompt import PromptParams
from surgvqa.params.sanity import SanityParams
from surgvqa.params.train import TrainParams
from surgvqa.train.train import stage_examples


def sanity_overfit(splits_dir: Path, raw_dir: Path, base_dir: Path, model: ModelParams, prompt: PromptParams,
                   lora: LoraParams, train: TrainParams, sanity: SanityParams) -> dict:
    """Train a fresh LoRA for `sanity.steps` steps on `sanity.samples` training rows; pass below the threshold."""
    from transformers import Trainer, TrainingArguments

    from surgvqa.model.load import base_record, load_base
    from surgvqa.model.lora import new_adapter
    from surgvqa.model.sft import Collator, SFTDataset

    rows = read_jsonl(splits_dir / "train.jsonl")
    examples = stage_examples(rows, STAGE_IDS, raw_dir, candidate_sets(rows), prompt)[: sanity.samples]
    base_model, processor = load_base(base_record(base_dir), model)
    peft_model = new_adapter(base_model, lora, lora.r, lora.alpha, seed=train.seed)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, max_steps=sanity.steps, learning_rate=sanity.learning_rate,
                                 per_device_train_batch_size=sanity.batch_size,
                                 logging_steps=max(1, sanity.steps // 20), logging_nan_inf_filter=False,
                                 lr_scheduler_type="constant", save_strategy="no", report_to="none", seed=train.seed,
                                 remove_unused_columns=False, dataloader_pin_memory=False)
        trainer = Trainer(model=peft_model, args=args, data_collator=Collator(processor.tokenizer.pad_token_id),
                          train_dataset=SFTDataset(examples, processor, train.max_length, prompt.system))
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"samples": len(examples), "steps": sanity.steps, "first_loss": losses[0], "final_loss": losses[-1],
            "threshold": sanity.max_final_loss, "passed": losses[-1] < sanity.max_final_loss}


def run(splits_dir: Path, raw_dir: Path, base_dir: Path, model: ModelParams, prompt: PromptParams, lora: LoraParams,
        train: TrainParams, sanity: SanityParams) -> dict:
    """The check: overfit, print the losses, fail unless the final one is below `sanity.max_final_loss`."""
    r = sanity_overfit(splits_dir, raw_dir, base_dir, model, prompt, lora, train, sanity)
    print(f"sanity-overfit: loss {r['first_loss']:.3f} -> {r['final_loss']:.3f} in {r['steps']} steps "
          f"(threshold {r['threshold']}): {'PASSED' if r['passed'] else 'FAILED'}")
    if not r["passed"]:  # a NaN final loss is not below the threshold either
        raise SurgvqaError("the model could not overfit a few dozen examples: check the label masks and the "
                           "learning rate (sanity.learning_rate)")
    return r


def main(argv: list[str] | None = None) -> int:
    """`surgvqa sanity-overfit`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw layout (default: {RAW_DIR})")
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, splits_dir=args.splits, raw_dir=args.raw, base_dir=args.base)


if __name__ == "__main__":
    raise SystemExit(main())
