"""One training stage of one approach: load the base, attach or continue the adapter, train, save, record.

The adapter lands in the standard PEFT layout (adapter_config.json + adapter_model.safetensors) beside a
lineage.json. Checkpoints go to a folder outside the DVC output (DVC deletes outputs before a stage runs),
so a rerun after an interruption resumes from the last checkpoint and reopens the same MLflow run.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl
from surgvqa.model.base import base_record, load_base, quantization_record
from surgvqa.model.lineage import (ADAPTER_WEIGHTS, git_commit, read_lineage, sha256_file, write_lineage)
from surgvqa.model.prompts import candidate_sets, render_prompt
from surgvqa.model.sft import Collator, Example, SFTDataset, image_of
from surgvqa.params import Params
from surgvqa.train.approaches import STAGES, Hyper, StagePlan, plan_rows, size_hyper

RUN_ID_FILE = "mlflow_run_id"


def stage_examples(rows: list[dict], stages: tuple[int, ...], raw_dir: Path, candidates: dict,
                   params: Params) -> list[Example]:
    """The SFT examples of the rows whose stage is in `stages`."""
    return [Example(image_of(raw_dir, r["img_id"]), render_prompt(r["question"], candidates, params.prompt), r["answer"])
            for r in rows if r["stage_id"] in stages]


def _check_parent(parent: dict, base: dict, quantization: dict) -> None:
    # Continuing an adapter on other weights, or with another quantization, would silently change what it means.
    if parent["base"]["content_hash"] != base["content_hash"]:
        raise SurgvqaError(f"parent adapter was trained on base {parent['base']['content_hash'][:12]}, this base is "
                           f"{base['content_hash'][:12]}: rerun the whole approach (dvc repro)")
    if parent["quantization"] != quantization:
        raise SurgvqaError(f"parent adapter was trained with quantization {parent['quantization']}, this stage uses "
                           f"{quantization}: keep model.quantize the same across the curriculum")


def _training_args(ckpt_dir: Path, plan: StagePlan, hp: Hyper, params: Params, dtype):
    import torch
    from transformers import TrainingArguments

    t = params.train
    return TrainingArguments(
        output_dir=str(ckpt_dir), num_train_epochs=hp.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=hp.batch_size, per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=plan.learning_rate, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, logging_steps=t.logging_steps, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=2, eval_strategy="no", report_to="none", seed=t.seed, data_seed=t.seed,
        remove_unused_columns=False, dataloader_num_workers=0, label_names=["labels"],
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16)


def train_stage(plan: StagePlan, params: Params, splits_dir: Path, raw_dir: Path, base_dir: Path,
                checkpoint_root: Path, callbacks: tuple = ()) -> dict:
    """Train one stage's adapter into plan.out_dir and return its lineage record."""
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    from surgvqa import tracking
    from surgvqa.model.lora import check_trainable_is_lora, continue_adapter, new_adapter

    train_rows, val_rows = read_jsonl(splits_dir / "train.jsonl"), read_jsonl(splits_dir / "val.jsonl")
    candidates = candidate_sets(train_rows)  # from the training split only
    rows = plan_rows(plan, train_rows, params.train.seed)
    train_ex = stage_examples(rows, STAGES, raw_dir, candidates, params)
    replayed = len(rows) - sum(r["stage_id"] in plan.train_stages for r in rows)
    val_by_stage = {s: stage_examples(val_rows, (s,), raw_dir, candidates, params) for s in STAGES}
    own_val = stage_examples(val_rows, plan.train_stages, raw_dir, candidates, params)
    if not train_ex or not own_val:
        raise SurgvqaError(f"{plan.name}: no training or validation rows for stages {plan.train_stages}")
    hp = size_hyper(len(train_ex), params.train, params.lora)

    base = base_record(base_dir)
    model, processor = load_base(base, params.model)
    device_type = next(model.parameters()).device.type
    quantization = quantization_record(params.model, device_type)
    parent = read_lineage(plan.parent) if plan.parent else None
    if parent:
        _check_parent(parent, base, quantization)
    if quantization["quantized"]:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if plan.parent:
        model = continue_adapter(model, plan.parent)
    else:
        model = new_adapter(model, params.lora, hp.r, hp.alpha, seed=params.train.seed)
    trainable = check_trainable_is_lora(model)

    ckpt_dir = checkpoint_root / plan.name
    resume = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    run_id_file = ckpt_dir / RUN_ID_FILE
    resume_run = run_id_file.read_text().strip() if resume and run_id_file.is_file() else None
    if not resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # a run that died before its first checkpoint: nothing to resume
    tags = {"approach": plan.approach, "stage": str(plan.stage or "all"), "base_model": base["name"],
            "base_model_hash": base["content_hash"], "quantized": str(quantization["quantized"]).lower(),
            "quantization": quantization.get("method", "none"),
            "parent_adapter": str(plan.parent) if plan.parent else "none",
            "parent_run_id": parent["mlflow_run_id"] if parent else "none",
            "git_commit": str(git_commit()["sha"])}
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    trainer = Trainer(model=model, args=_training_args(ckpt_dir, plan, hp, params, dtype),
                      train_dataset=SFTDataset(train_ex, processor, hp.max_length, params.prompt.system),
                      data_collator=Collator(processor.tokenizer.pad_token_id),
                      callbacks=[tracking.StepMetrics(), *callbacks])

    def val_loss(examples: list[Example]) -> float:
        ds = SFTDataset(examples, processor, hp.max_length, params.prompt.system)
        return float(trainer.evaluate(eval_dataset=ds, metric_key_prefix="val")["val_loss"])

    with tracking.start_run(params.tracking, plan.name.replace("/", "-"), tags, resume_run) as run:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        run_id_file.write_text(run.info.run_id)
        if not resume_run:
            tracking.log_params({"approach": plan.approach, "stage": plan.stage or "all",
                                 "train_stages": list(plan.train_stages), "learning_rate": plan.learning_rate,
                                 "train_rows": len(train_ex), "replay_rows": replayed,
                                 "replay_stages": list(plan.replay_stages), "trainable_parameters": trainable,
                                 "hyper": vars(hp), "train": vars(params.train) | {"tiers": "see params.yaml"},
                                 "lora": vars(params.lora), "quantization": quantization})
        continuity = _continuity(plan, parent, val_by_stage, val_loss, params.train.continuity_tolerance)
        result = trainer.train(resume_from_checkpoint=resume)
        by_stage = {str(s): val_loss(ex) for s, ex in val_by_stage.items() if ex}
        own = val_loss(own_val)
        tracking.log_metrics({"val_loss": own, **{f"val_loss_stage_{s}": v for s, v in by_stage.items()}},
                             step=result.global_step)

        if plan.out_dir.exists():
            shutil.rmtree(plan.out_dir)
        model.peft_config["default"].base_model_name_or_path = base["source"]
        model.save_pretrained(str(plan.out_dir), safe_serialization=True)
        record = {
            "approach": plan.approach, "stage": plan.stage, "train_stages": list(plan.train_stages),
            "base": {k: base[k] for k in ("name", "source", "revision", "content_hash", "dtype", "kind")},
            "base_dir": str(base_dir), "quantization": quantization,
            "parent": None if not parent else {"path": str(plan.parent), "adapter_sha256": parent["adapter_sha256"],
                                                "mlflow_run_id": parent["mlflow_run_id"]},
            "data": {"train_file": str(splits_dir / "train.jsonl"), "sha256": sha256_file(splits_dir / "train.jsonl"),
                     "rows": len(train_ex), "replay_rows": replayed, "replay_stages": list(plan.replay_stages),
                     "replay_share": plan.replay_share},
            "params": {"learning_rate": plan.learning_rate, "hyper": vars(hp), "lora_dropout": params.lora.dropout,
                       "target_modules": params.lora.target_modules, "seed": params.train.seed,
                       "prompt_template": params.prompt.template},
            "git_commit": git_commit(), "mlflow_run_id": run.info.run_id,
            "adapter_sha256": sha256_file(plan.out_dir / ADAPTER_WEIGHTS),
            "trainable_parameters": trainable, "global_step": result.global_step,
            "resumed_from": Path(resume).name if resume else None,
            "final_train_loss": float(result.training_loss), "val_loss": own, "val_loss_by_stage": by_stage,
            "continuity": continuity,
        }
        write_lineage(plan.out_dir, record)
        tracking.log_dir(plan.out_dir, "adapter")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return record


def _continuity(plan: StagePlan, parent: dict | None, val_by_stage: dict, val_loss, tolerance: float) -> dict | None:
    """Curriculum stage N>1: the first validation loss on stage N-1's data against stage N-1's final one."""
    from surgvqa import tracking

    if parent is None:
        return None
    prev = plan.train_stages[0] - 1
    start, parent_final = val_loss(val_by_stage[prev]), parent["val_loss_by_stage"][str(prev)]
    change = (start - parent_final) / parent_final if parent_final else 0.0
    tracking.log_metrics({"continuity_start_val_loss": start, "continuity_parent_val_loss": parent_final,
                          "continuity_relative_change": change}, step=0)
    ok = abs(change) <= tolerance
    if not ok:
        warnings.warn(f"{plan.name}: validation loss on stage {prev} moved {change:+.1%} between the parent's end "
                      f"({parent_final:.4f}) and this stage's start ({start:.4f}), beyond train.continuity_tolerance "
                      f"{tolerance:.0%}: the adapter may not have been continued as trained", stacklevel=2)
    return {"stage": prev, "start_val_loss": start, "parent_val_loss": parent_final, "relative_change": change,
            "within_tolerance": ok}
