"""Stage `train_<approach>`: one training stage of one approach, from base (or parent adapter) to a verified
adapter folder.

Load the base, attach a fresh adapter or continue the parent's, train, save in the standard PEFT layout
(adapter_config.json + adapter_model.safetensors) beside a lineage.json. The lineage holds only what the inputs
determine, so retraining on the same inputs gives the same bytes; the run's own facts (MLflow run id, git
commit, resume) go to the MLflow run, found again through its `adapter_sha256` tag.

A non-finite training or validation loss fails the stage with the step and stage named, and no adapter is
written. Checkpoints go outside the DVC output (DVC deletes outputs before a stage runs), so a rerun after an
interruption resumes from the last checkpoint in the same MLflow run, but only when the checkpoints were made
from the same inputs (a fingerprint beside them says so); otherwise they are discarded.

Killed at any point (SIGKILL included), a stage leaves nothing a later stage could take as complete: a checkpoint
cut short (missing any process's files: train/checkpoints.py) is skipped, the adapter folder appears whole by a
rename or not at all, and the MLflow run of an attempt whose checkpoints are discarded is marked KILLED, not left
RUNNING.

Started by a launcher as several processes (`torchrun`, `accelerate launch`: dvc.yaml's `${launch.command}`), the
Trainer trains data-parallel (DDP) on shards of the rows and the stage is otherwise the same: the main process
alone decides what to resume, logs the one MLflow run and writes the checkpoints' records and the adapter. The
lineage records the process count, since every process adds its own batch to each optimizer step.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

from surgvqa import distributed, entry
from surgvqa.data.raw import RAW_DIR
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_jsonl, replace_folder, write_text
from surgvqa.model.lineage import ADAPTER_WEIGHTS, check_adapter_files, sha256_file, write_lineage
from surgvqa.model.load import base_record, load_base, quantization_record
from surgvqa.model.prompts import candidate_sets, render_prompt
from surgvqa.model.sft import Collator, Example, SFTDataset, image_of
from surgvqa.names import APPROACHES, STAGE_IDS
from surgvqa.params.lora import LoraParams
from surgvqa.params.model import ModelParams
from surgvqa.params.prompt import PromptParams
from surgvqa.params.tracking import TrackingParams
from surgvqa.params.train import Hyper, TrainParams
from surgvqa.train.approaches import StagePlan, plan_rows, plan_stage, size_hyper
from surgvqa.train.checkpoints import FINGERPRINT_FILE, RUN_ID_FILE, end_abandoned_run, inputs_fingerprint, resume_point


def adapter_partial(out_dir: Path) -> Path:
    """Where an adapter is written until it is complete: models/sequential/.stage_1.partial beside
    models/sequential/stage_1."""
    return out_dir.with_name(f".{out_dir.name}.partial")


def stage_examples(rows: list[dict], stages: tuple[int, ...], raw_dir: Path, candidates: dict,
                   prompt: PromptParams) -> list[Example]:
    """The SFT examples of the rows whose stage is in `stages`."""
    return [Example(image_of(raw_dir, r["img_id"]), render_prompt(r["question"], candidates, prompt), r["answer"])
            for r in rows if r["stage_id"] in stages]


def _check_parent(parent: dict, base: dict) -> None:
    # Continuing an adapter on other weights would silently change what it means. Needs only base.json: checked
    # before the base loads.
    if parent["base"]["content_hash"] != base["content_hash"]:
        raise SurgvqaError(f"parent adapter was trained on base {parent['base']['content_hash'][:12]}, this base is "
                           f"{base['content_hash'][:12]}: rerun the whole approach (dvc repro)")


def _check_parent_quantization(parent: dict, quantization: dict) -> None:
    # The same for another quantization; what the stage uses is known once the base is loaded on its device.
    if parent["quantization"] != quantization:
        raise SurgvqaError(f"parent adapter was trained with quantization {parent['quantization']}, this stage uses "
                           f"{quantization}: keep model.quantize the same across the curriculum")


def check_finite(value: float, what: str, plan: StagePlan, step: int) -> None:
    """Fail the stage on a NaN or infinite loss: a diverged adapter must never be written as if it were fine."""
    if not math.isfinite(value):
        raise SurgvqaError(f"{plan.name}: {what} is {value} at step {step}; training diverged and no adapter was "
                           "written. Lower the learning rate (train.*learning_rate*) or check the data, then rerun.")


def _training_args(ckpt_dir: Path, plan: StagePlan, hyper: Hyper, train: TrainParams, dtype, device):
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(ckpt_dir), num_train_epochs=hyper.epochs, max_steps=train.max_steps,
        per_device_train_batch_size=hyper.batch_size, per_device_eval_batch_size=hyper.batch_size,
        gradient_accumulation_steps=train.grad_accum, learning_rate=plan.learning_rate,
        warmup_steps=train.warmup_ratio, weight_decay=train.weight_decay, logging_steps=train.logging_steps,
        # Without this the Trainer hides a NaN step inside the logging window's average.
        logging_nan_inf_filter=False,
        save_strategy="steps", save_steps=train.save_steps, save_total_limit=2, eval_strategy="no",
        report_to="none", seed=train.seed, data_seed=train.seed, remove_unused_columns=False,
        dataloader_num_workers=0, label_names=["labels"], dataloader_pin_memory=torch.cuda.is_available(),
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        # Where the model is, not a CPU shortcut: on the CPU, several processes train data-parallel (gloo) only
        # when the Trainer knows it runs there.
        use_cpu=device.type == "cpu")


def _finite_loss_trainer(plan: StagePlan):
    """A Trainer whose every training step checks its loss, so a divergence fails at the step it happens."""
    from transformers import Trainer

    from surgvqa import tracking

    class FiniteLossTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            value = float(loss)
            if not math.isfinite(value):
                step = self.state.global_step + 1
                if distributed.is_main():  # the divergence stays visible in MLflow
                    tracking.log_metrics({"train_loss": value}, step=step)
                check_finite(value, "the training loss", plan, step)
            return loss

    return FiniteLossTrainer


def train_stage(plan: StagePlan, splits_dir: Path, raw_dir: Path, base_dir: Path, checkpoint_root: Path, *,
                model: ModelParams, prompt: PromptParams, lora: LoraParams, train: TrainParams,
                tracking: TrackingParams, callbacks: tuple = ()) -> dict:
    """Train one stage's adapter into plan.out_dir. Returns {"lineage": the lineage record, "run": the run's
    own facts (MLflow run id, final training loss, resumed checkpoint, git commit)}; None in a process other than
    the main one (it trains its share and writes nothing)."""
    from surgvqa import tracking as mlflow_tracking
    from surgvqa.model.lineage import git_commit
    from surgvqa.model.lora import check_trainable_is_lora, continue_adapter, new_adapter

    main, processes = distributed.is_main(), distributed.world_size()
    if main:  # a server that does not answer fails here, before the model loads
        mlflow_tracking.check_server(tracking)
    train_rows, val_rows = read_jsonl(splits_dir / "train.jsonl"), read_jsonl(splits_dir / "val.jsonl")
    candidates = candidate_sets(train_rows)  # from the training split only
    rows = plan_rows(plan, train_rows, train.seed)
    train_examples = stage_examples(rows, STAGE_IDS, raw_dir, candidates, prompt)
    replayed = len(rows) - sum(r["stage_id"] in plan.train_stages for r in rows)
    val_by_stage = {s: stage_examples(val_rows, (s,), raw_dir, candidates, prompt) for s in STAGE_IDS}
    own_val = stage_examples(val_rows, plan.train_stages, raw_dir, candidates, prompt)
    if not train_examples or not own_val:
        raise SurgvqaError(f"{plan.name}: no training or validation rows for stages {plan.train_stages}")
    hyper, hyper_source = size_hyper(len(train_examples), train, lora)

    base = base_record(base_dir)
    parent = check_adapter_files(plan.parent) if plan.parent else None  # present, readable, the bytes it records
    if parent:  # before the base loads: a broken parent fails in seconds, not after minutes of loading on a GPU
        _check_parent(parent, base)
    peft_model, processor = load_base(base, model)
    quantization = quantization_record(model, next(peft_model.parameters()).device.type)
    if parent:
        _check_parent_quantization(parent, quantization)
    if quantization["quantized"]:
        from peft import prepare_model_for_kbit_training

        peft_model = prepare_model_for_kbit_training(peft_model, use_gradient_checkpointing=False)
    if plan.parent:
        peft_model = continue_adapter(peft_model, plan.parent)
    else:
        peft_model = new_adapter(peft_model, lora, hyper.r, hyper.alpha, seed=train.seed)
    trainable = check_trainable_is_lora(peft_model)

    data_sha256 = sha256_file(splits_dir / "train.jsonl")
    stage_params = {"model": model, "prompt": prompt, "lora": lora, "train": train}
    fingerprint = inputs_fingerprint(plan, base, parent, data_sha256, raw_dir, stage_params, processes)
    ckpt_dir = checkpoint_root / plan.name
    # Only the main process clears checkpoints and picks the one to resume; the others follow its answer (each
    # looking for itself could see the folder mid-change).
    resume, resume_run, abandoned_run = resume_point(ckpt_dir, fingerprint, processes) if main else (None, None, None)
    resume = distributed.from_main(resume)
    parent_run = mlflow_tracking.find_adapter_run(tracking, parent) if parent and main else None
    commit = git_commit()
    tags = {"approach": plan.approach, "stage": str(plan.stage or "all"), "base_model": base["name"],
            "base_model_hash": base["content_hash"], "quantized": str(quantization["quantized"]).lower(),
            "quantization": quantization.get("method", "none"),
            "parent_adapter": str(plan.parent) if plan.parent else "none",
            "parent_adapter_sha256": parent["adapter_sha256"] if parent else "none",
            "parent_run_id": (parent_run or f"not found in {tracking.resolved_uri()}") if parent else "none"}
    dtype = next(p for p in peft_model.parameters() if p.is_floating_point()).dtype
    device = next(peft_model.parameters()).device
    if distributed.launched() and device.type != distributed.group_device_type():
        raise SurgvqaError(f"model.device puts the model on {device.type}, but the processes joined a "
                           f"{distributed.group_device_type()} group: with several processes, set model.device to auto")
    trainer = _finite_loss_trainer(plan)(
        model=peft_model, args=_training_args(ckpt_dir, plan, hyper, train, dtype, device),
        train_dataset=SFTDataset(train_examples, processor, hyper.max_length, prompt.system),
        data_collator=Collator(processor.tokenizer.pad_token_id), callbacks=[mlflow_tracking.StepMetrics(), *callbacks])

    def val_loss(examples: list[Example], what: str, step: int) -> float:
        dataset = SFTDataset(examples, processor, hyper.max_length, prompt.system)
        value = float(trainer.evaluate(eval_dataset=dataset, metric_key_prefix="val")["val_loss"])
        check_finite(value, what, plan, step)
        return value

    if not main:
        _train_share(trainer, resume, plan, parent, val_by_stage, own_val, val_loss, train.continuity_tolerance)
        return None
    with mlflow_tracking.start_run(tracking, plan.name.replace("/", "-"), tags, resume_run,
                                   params=stage_params) as run:
        if abandoned_run and abandoned_run != run.info.run_id:  # after start_run: the store answered
            end_abandoned_run(tracking, abandoned_run)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_text(ckpt_dir / RUN_ID_FILE, run.info.run_id)
        write_text(ckpt_dir / FINGERPRINT_FILE, fingerprint)
        if resume:  # the resumed run keeps its params; its tags say who finished it
            mlflow_tracking.set_tags(tags | {"resumed_from": Path(resume).name})
        else:
            mlflow_tracking.log_params({
                "approach": plan.approach, "stage": plan.stage or "all", "train_stages": list(plan.train_stages),
                "learning_rate": plan.learning_rate, "train_rows": len(train_examples), "replay_rows": replayed,
                "replay_stages": list(plan.replay_stages), "trainable_parameters": trainable,
                "hyper": dataclasses.asdict(hyper), "hyper_source": hyper_source, "processes": processes,
                "train": vars(train) | {"tiers": "see params.yaml"}, "lora": vars(lora), "quantization": quantization})
        continuity, result, by_stage, own = _train_share(trainer, resume, plan, parent, val_by_stage, own_val,
                                                         val_loss, train.continuity_tolerance)
        # Throughput of this attempt's training loop, all processes together (the Trainer counts every process's
        # rows): what the MLflow UI compares between runs on one and several GPUs. A resumed run counts its part.
        throughput = {"train_runtime": result.metrics["train_runtime"],
                      "train_rows_per_second": result.metrics["train_samples_per_second"]}
        mlflow_tracking.log_metrics({"val_loss": own, "final_train_loss": float(result.training_loss), **throughput,
                                     **{f"val_loss_stage_{s}": v for s, v in by_stage.items()}},
                                    step=result.global_step)

        # The adapter is written whole into a hidden folder beside its place (the same file system, so the rename
        # cannot fail across devices), then renamed into place: a kill leaves no adapter folder (or the old one),
        # never one missing its lineage or cut short. A leftover of a killed attempt is removed first.
        partial = adapter_partial(plan.out_dir)
        shutil.rmtree(partial, ignore_errors=True)
        peft_model.peft_config["default"].base_model_name_or_path = base["source"]
        peft_model.save_pretrained(str(partial), safe_serialization=True)
        adapter_sha256 = sha256_file(partial / ADAPTER_WEIGHTS)
        record = {
            "approach": plan.approach, "stage": plan.stage, "train_stages": list(plan.train_stages),
            "base": {k: base[k] for k in ("name", "source", "revision", "content_hash", "dtype", "kind")},
            "base_dir": str(base_dir), "quantization": quantization, "processes": processes,
            "parent": None if not parent else {"path": str(plan.parent), "adapter_sha256": parent["adapter_sha256"]},
            "data": {"train_file": str(splits_dir / "train.jsonl"), "sha256": data_sha256,
                     "rows": len(train_examples), "replay_rows": replayed, "replay_stages": list(plan.replay_stages),
                     "replay_share": plan.replay_share},
            "params": {"learning_rate": plan.learning_rate, "hyper": dataclasses.asdict(hyper),
                       "hyper_source": hyper_source, "lora_dropout": lora.dropout,
                       "target_modules": lora.target_modules, "seed": train.seed, "prompt_template": prompt.template},
            "adapter_sha256": adapter_sha256, "trainable_parameters": trainable, "global_step": result.global_step,
            "val_loss": own, "val_loss_by_stage": by_stage, "continuity": continuity,
        }
        write_lineage(partial, record)
        replace_folder(plan.out_dir, partial)
        mlflow_tracking.set_tags({"adapter_sha256": adapter_sha256})  # how an adapter finds its run again
        mlflow_tracking.log_dir(plan.out_dir, "adapter")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    facts = {"mlflow_run_id": run.info.run_id, "final_train_loss": float(result.training_loss),
             "resumed_from": Path(resume).name if resume else None, "git_commit": commit}
    return {"lineage": record, "run": facts}


def _train_share(trainer, resume: str | None, plan: StagePlan, parent: dict | None, val_by_stage: dict,
                 own_val: list[Example], val_loss, tolerance: float):
    """What every process runs, in the same order (each evaluation and step gathers across the processes): the
    continuity check, training, the validation losses. Returns (continuity, train result, loss by stage, loss)."""
    continuity = _continuity(plan, parent, val_by_stage, val_loss, tolerance)
    result = trainer.train(resume_from_checkpoint=resume)
    by_stage = {str(s): val_loss(ex, f"the validation loss on stage {s}", result.global_step)
                for s, ex in val_by_stage.items() if ex}
    own = val_loss(own_val, "the validation loss", result.global_step)
    return continuity, result, by_stage, own


def _continuity(plan: StagePlan, parent: dict | None, val_by_stage: dict, val_loss, tolerance: float) -> dict | None:
    """Curriculum stage N>1: the first validation loss on stage N-1's data against stage N-1's final one. A jump
    beyond `tolerance` means the adapter was not continued as trained; verify-adapter fails on it."""
    from surgvqa import tracking as mlflow_tracking

    if parent is None:
        return None
    previous = plan.train_stages[0] - 1
    start = val_loss(val_by_stage[previous], f"the starting validation loss on stage {previous}", 0)
    parent_final = parent["val_loss_by_stage"][str(previous)]
    change = (start - parent_final) / parent_final if parent_final else 0.0
    if distributed.is_main():
        mlflow_tracking.log_metrics({"continuity_start_val_loss": start, "continuity_parent_val_loss": parent_final,
                                     "continuity_relative_change": change}, step=0)
    within = abs(change) <= tolerance
    if not within and distributed.is_main():
        print(f"train {plan.name}: validation loss on stage {previous} moved {change:+.1%} between the parent's end "
              f"and this stage's start, beyond train.continuity_tolerance {tolerance:.0%}: verify-adapter will fail")
    return {"stage": previous, "start_val_loss": start, "parent_val_loss": parent_final, "relative_change": change,
            "tolerance": tolerance, "within_tolerance": within}


def run(approach: str, stage: int | None, splits_dir: Path, raw_dir: Path, base_dir: Path, models_dir: Path,
        checkpoint_root: Path, model: ModelParams, prompt: PromptParams, lora: LoraParams, train: TrainParams,
        tracking: TrackingParams) -> dict:
    """The stage: plan the approach's training stage and train it (None in a process other than the main one)."""
    plan = plan_stage(approach, stage, train, models_dir)
    result = train_stage(plan, splits_dir, raw_dir, base_dir, checkpoint_root, model=model, prompt=prompt,
                         lora=lora, train=train, tracking=tracking)
    return None if result is None else result | {"plan": plan}


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.train.train` (dvc.yaml) and `surgvqa train`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--approach", required=True, choices=APPROACHES)
    parser.add_argument("--stage", type=int, choices=STAGE_IDS, help="the clinical stage (sequential and curriculum)")
    parser.add_argument("--splits", type=Path, default=Path("data/split"))
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help=f"raw layout (default: {RAW_DIR})")
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--checkpoints", type=Path, default=Path("models/.checkpoints"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, approach=args.approach, stage=args.stage, splits_dir=args.splits,
                      raw_dir=args.raw, base_dir=args.base, models_dir=args.models, checkpoint_root=args.checkpoints)


def _summary(result: dict) -> None:
    lineage, facts, plan = result["lineage"], result["run"], result["plan"]
    print(f"train {plan.name}: {lineage['global_step']} steps, train loss {facts['final_train_loss']:.4f}, val loss "
          f"{lineage['val_loss']:.4f}, by stage {lineage['val_loss_by_stage']} -> {plan.out_dir} "
          f"(MLflow run {facts['mlflow_run_id']})")


if __name__ == "__main__":
    raise SystemExit(main())
