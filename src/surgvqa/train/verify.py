"""Stage `verify_adapters` (`surgvqa verify-adapter`): is each adapter what its lineage says, and safe to build on?

Each check reports ok / FAILED / skipped (with the reason), so a reader sees what was and was not verified.
Any failure fails the stage, and the evaluations depend on its report, so an unverified adapter is never scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from surgvqa import entry
from surgvqa.errors import SurgvqaError
from surgvqa.io import write_json
from surgvqa.model.lineage import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    REQUIRED_KEYS,
    check_adapter_weights,
    read_lineage,
    restore_hint,
    sha256_file,
    sha256_weights,
)
from surgvqa.params.model import ModelParams

# A LoRA trains a small share of the model: well under 1 % of a 2B model at rank 16, a few % of the tiny one.
# Above this share the "adapter" is closer to a full fine-tune (or the base was left trainable).
MAX_TRAINABLE_FRACTION = 0.10


@dataclass
class Report:
    """The outcome of every check: (name, status, detail), status one of ok, FAILED, skipped."""

    adapter: Path
    checks: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, "ok" if ok else "FAILED", detail))
        return ok

    def skip(self, name: str, why: str) -> None:
        self.checks.append((name, "skipped", why))

    @property
    def ok(self) -> bool:
        return all(status != "FAILED" for _, status, _ in self.checks)

    def failed_names(self) -> str:
        return ", ".join(n for n, s, _ in self.checks if s == "FAILED")

    def text(self) -> str:
        width = max(len(n) for n, _, _ in self.checks)
        lines = [f"verify-adapter {self.adapter}"]
        lines += [f"  {s:<7} {n:<{width}}  {d}" for n, s, d in self.checks]
        lines.append(f"  result: {'PASSED' if self.ok else 'FAILED'}")
        return "\n".join(lines)


def _weights_differ(first: Path, second: Path) -> bool:
    from safetensors.torch import load_file

    tensors, others = load_file(str(first)), load_file(str(second))
    return tensors.keys() != others.keys() or any(not tensors[k].equal(others[k]) for k in tensors)


def verify_adapter(adapter: Path, model: ModelParams) -> Report:
    """Run every check on one adapter directory; never raises for a failed check, only for an unreadable one."""
    import dataclasses

    from surgvqa.model.load import load_base
    from surgvqa.model.lora import check_trainable_is_lora, lora_parameter_count

    report = Report(adapter)
    weights = adapter / ADAPTER_WEIGHTS
    absent = [f.name for f in (adapter / ADAPTER_CONFIG, weights) if not f.is_file()]
    if absent:
        what = "does not exist" if not adapter.exists() else f"lacks {' and '.join(absent)} (not a PEFT adapter folder)"
        raise SurgvqaError(f"{adapter} {what}: {restore_hint(adapter)}")
    lineage = read_lineage(adapter)
    missing = [k for k in REQUIRED_KEYS if k not in lineage]
    base = lineage.get("base") or {}
    missing += [f"base.{k}" for k in ("name", "source", "content_hash") if not base.get(k)]
    report.add("lineage complete", not missing, f"missing {missing}" if missing else "all fields present")
    keys, problem = check_adapter_weights(adapter, lineage)  # a truncated or corrupted file stops here
    report.add("adapter hash", not problem, problem or "weights match lineage.adapter_sha256")

    stray = [k for k in keys if "lora_" not in k]
    report.add("only LoRA weights", not stray and bool(keys),
               f"{len(keys)} LoRA tensors" if not stray else f"{len(stray)} non-LoRA tensors, e.g. {stray[0]}")
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    report.add("base not trainable", not config.get("modules_to_save"),
               f"modules_to_save={config.get('modules_to_save')}")

    source = Path(base.get("source", ""))
    if source.is_dir():
        base_config = json.loads((source / "config.json").read_text())
        report.add("base is full precision", not base_config.get("quantization_config"),
                   "no quantization_config in the base checkpoint")
        report.add("base hash", sha256_weights(source) == base.get("content_hash"), f"weights of {source}")
    else:
        report.skip("base is full precision", f"{source} is a Hub id; the base stage checked it when resolving")
        report.skip("base hash", f"{source} is a Hub id pinned to revision {base.get('revision')}")

    parent = lineage.get("parent")
    if parent:
        ppath = Path(parent["path"])
        exists = (ppath / ADAPTER_WEIGHTS).is_file()
        if report.add("parent exists", exists, str(ppath) if exists else
                      f"{ppath / ADAPTER_WEIGHTS} does not exist: {restore_hint(ppath)}"):
            same = sha256_file(ppath / ADAPTER_WEIGHTS) == parent["adapter_sha256"]
            report.add("parent hash", same, "parent weights match the hash recorded at training time" if same else
                       f"{ppath / ADAPTER_WEIGHTS} is not the parent this adapter was trained from (its hash "
                       f"differs from lineage.parent.adapter_sha256): {restore_hint(ppath)}, then retrain "
                       f"{adapter} if the parent changed on purpose")
            report.add("differs from parent", _weights_differ(weights, ppath / ADAPTER_WEIGHTS),
                       "continued training changed the weights")
    elif lineage.get("approach") == "curriculum" and (lineage.get("stage") or 1) > 1:
        report.add("parent exists", False, "a curriculum stage after the first must name its parent")
    else:
        report.skip("parent exists", "trained from the base (no parent)")
    _check_continuity(report, lineage)

    from peft import PeftModel

    full_precision = dataclasses.replace(model, quantize="none")
    base_model, _ = load_base({**base, "image_pixels": model.image_pixels}, full_precision)
    total_base = sum(p.numel() for p in base_model.parameters())
    peft_model = PeftModel.from_pretrained(base_model, str(adapter), is_trainable=True)
    report.add("exactly one adapter", len(peft_model.peft_config) == 1, f"adapters: {list(peft_model.peft_config)}")
    try:
        trainable = check_trainable_is_lora(peft_model)
        report.add("trainable = LoRA", True, f"{trainable} trainable parameters, all LoRA")
    except SurgvqaError as e:
        report.add("trainable = LoRA", False, str(e))
    fraction = lora_parameter_count(peft_model) / total_base
    report.add("LoRA-sized", 0 < fraction <= MAX_TRAINABLE_FRACTION,
               f"{fraction:.2%} of the base's parameters (limit {MAX_TRAINABLE_FRACTION:.0%})")
    return report


def _check_continuity(report: Report, lineage: dict) -> None:
    """A continued adapter must start where its parent ended: the relative jump of the parent's validation loss,
    measured at training time, within the tolerance recorded with it (train.continuity_tolerance)."""
    continuity = lineage.get("continuity")
    if not continuity:
        report.skip("continuity", "not a continued adapter (no parent)")
        return
    change, tolerance = continuity["relative_change"], continuity["tolerance"]
    report.add("continuity", abs(change) <= tolerance,
               f"validation loss on stage {continuity['stage']} moved {change:+.2%} from the parent's end "
               f"({continuity['parent_val_loss']:.4f} -> {continuity['start_val_loss']:.4f}); "
               f"tolerance {tolerance:.0%}")


def run(adapters: list[Path], report_path: Path | None, model: ModelParams) -> list[Report]:
    """The stage: check every adapter, print a line per check, write the JSON report, fail on any failure."""
    reports = [verify_adapter(a, model) for a in adapters]
    for r in reports:
        print(r.text())
    if report_path:
        write_json(report_path, {"adapters_passed": sum(r.ok for r in reports), "adapters": len(reports),
                                 "checks": {str(r.adapter): {n: s for n, s, _ in r.checks} for r in reports}})
    failed = [f"{r.adapter} ({r.failed_names()})" for r in reports if not r.ok]
    if failed:
        raise SurgvqaError(f"verification failed: {'; '.join(failed)}; each FAILED line above names the file and "
                           "the fix")
    return reports


def main(argv: list[str] | None = None) -> int:
    """`python -m surgvqa.train.verify` (dvc.yaml) and `surgvqa verify-adapter`."""
    parser = entry.parser(__doc__)
    parser.add_argument("adapter", nargs="+", type=Path, help="adapter directories (each with lineage.json)")
    parser.add_argument("--report", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    return entry.call(run, args.params, adapters=args.adapter, report_path=args.report)


if __name__ == "__main__":
    raise SystemExit(main())
