"""Benchmark: the evaluation engine against the straightforward reference, on the same adapters and items.

The reference loads one base model per stage adapter and answers one question at a time (as the prototype
did); the engine keeps one base with the adapters switched by name and answers in batches. Both use the same
decoding rule, so their predictions must be identical. Wall time includes loading the models.

`--base synthetic` needs no `dvc repro`: it builds a random Qwen2-VL with Qwen/Qwen2-VL-2B-Instruct's exact
dimensions in memory on model.device (CUDA when present; model.dtype, so bfloat16 on a GPU), adds one fresh
LoRA adapter (lora section) per adapter the approach loads, and times the engine alone on the test split (no
reference: the point is the real model's speed and memory, not agreement). Its answers mean nothing.
Every mode prints the device, QA/s and the peak memory (CUDA: max_memory_allocated; CPU: the process's peak RSS).

    . .venv/bin/activate && python bench/bench_engine.py            # after `dvc repro` (needs models/)
    python bench/bench_engine.py --items 200 --approach sequential --mode context --decoding constrained
    python bench/bench_engine.py --base synthetic --items 4         # the 2B's speed and memory, offline
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from surgvqa.names import APPROACHES, DECODINGS, EVAL_MODES

BASES = ("trained", "synthetic")
TRAINED_ITEMS = 1000
SYNTHETIC_ITEMS = {"cpu": 4, "gpu": 64}  # a 2B model on CPU answers a handful of questions a minute


def params_and_device(args):
    """The params file's values with the --decoding and --batch-size overrides, and the device they pick."""
    from surgvqa.device import pick_device
    from surgvqa.params.schema import load_params

    params = load_params(args.params)
    if args.decoding:
        params.evaluate.decoding = args.decoding
    if args.batch_size:
        params.evaluate.batch_size = args.batch_size
    return params, pick_device(params.model.device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--base", default="trained", choices=BASES,
                    help="trained: models/ from `dvc repro`, engine vs reference; synthetic: a random Qwen2-VL "
                         "of the real 2B's size with random adapters, built in memory, engine only")
    ap.add_argument("--approach", default="sequential", choices=APPROACHES)
    ap.add_argument("--mode", default="context", choices=EVAL_MODES)
    ap.add_argument("--decoding", choices=DECODINGS, help="default: evaluate.decoding")
    ap.add_argument("--batch-size", type=int, help="default: evaluate.batch_size")
    ap.add_argument("--items", type=int, help=f"test items (whole images, in file order); default: {TRAINED_ITEMS} "
                    f"(trained), {SYNTHETIC_ITEMS['cpu']} or {SYNTHETIC_ITEMS['gpu']} (synthetic on CPU or a GPU)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed warm-up on the first image")
    ap.add_argument("--models", default="models")
    ap.add_argument("--splits", default="data/split")
    ap.add_argument("--stage-table", default="data/categorized/question_stages.csv")
    args = ap.parse_args()
    if args.items is not None and args.items < 1:
        ap.error("--items must be at least 1")

    import peft  # noqa: F401  imported before the clock starts, so neither side pays the import
    import torch
    import transformers.models.qwen2_vl.modeling_qwen2_vl  # noqa: F401

    params, device = params_and_device(args)
    if args.items is None:
        synthetic_items = SYNTHETIC_ITEMS["cpu" if device.type == "cpu" else "gpu"]
        args.items = TRAINED_ITEMS if args.base == "trained" else synthetic_items
    if args.base == "trained" and not (Path(args.models) / "base").is_dir():
        print(f"{args.models}/base not found: run `dvc repro` first (or use --base synthetic)", file=sys.stderr)
        return 2
    bench = Bench(args, params, device)
    print(f"device {device_name(device)}, torch threads {torch.get_num_threads()}, {len(bench.items)} items, "
          f"{args.approach}, {args.mode} mode, {params.evaluate.decoding} decoding, batch {params.evaluate.batch_size}",
          flush=True)
    return bench.trained() if args.base == "trained" else bench.synthetic()


class Bench:
    """The items and candidates both bases answer, and the two ways of timing them."""

    def __init__(self, args, params, device):
        from surgvqa.data.raw import RAW_DIR
        from surgvqa.evaluate.evaluate import approach_adapters
        from surgvqa.infer.engine import Item
        from surgvqa.infer.routing import read_stage_table, route
        from surgvqa.io import read_jsonl
        from surgvqa.model.prompts import answer_choices
        from surgvqa.model.sft import image_of

        self.args, self.params, self.device = args, params, device
        splits = Path(args.splits)
        self.train_rows, test_rows = read_jsonl(splits / "train.jsonl"), read_jsonl(splits / "test.jsonl")
        rows = test_rows[: args.items]
        while len(rows) < len(test_rows) and rows[-1]["img_id"] == test_rows[len(rows)]["img_id"]:
            rows.append(test_rows[len(rows)])  # whole images, so context passing sees every earlier stage
        stage_of = route([r["question"] for r in rows], read_stage_table(Path(args.stage_table)), params.categorize)
        self.items = [Item(r["img_id"], image_of(RAW_DIR, r["img_id"]), r["question"], stage_of[r["question"]])
                      for r in rows]
        dirs, self.adapter_of_stage = approach_adapters(args.approach, Path(args.models))
        self.dirs = {n: dirs[n] for n in dict.fromkeys(self.adapter_of_stage.values())}  # only those that answer
        self.choices = answer_choices(self.train_rows)

    def answerer(self, models, processor):
        """An Answerer over `models` with a fresh image cache (so a warm-up leaves nothing cached)."""
        from surgvqa.infer.constrained import build_tries
        from surgvqa.infer.engine import Answerer
        from surgvqa.model.prompts import candidate_sets

        return Answerer(models, processor, self.choices, build_tries(processor.tokenizer, self.choices),
                        candidate_sets(self.train_rows))

    def answer(self, answerer, items, desc: str) -> list[str]:
        from surgvqa.infer.engine import answer_items

        p = self.params
        return answer_items(answerer, items, self.adapter_of_stage, self.args.mode, p.evaluate, p.prompt, desc=desc)

    def warm_items(self):
        return [it for it in self.items if it.img_id == self.items[0].img_id]

    def trained(self) -> int:
        """The engine, then the reference, on the trained adapters under models/; they must agree."""
        from surgvqa.infer.engine import AdapterModels
        from surgvqa.infer.generate import load_adapters
        from surgvqa.infer.reference import load_separate, reference_answers
        from surgvqa.model.load import base_record, load_base

        p, base_dir, items = self.params, Path(self.args.models) / "base", self.items
        if self.args.warmup:
            # One-time process costs (thread pools, allocator, lazy initialisation) would otherwise land on
            # whichever side runs first; both sides answer the warm-up image, untimed, on throwaway models.
            model, processor = load_base(base_record(base_dir), p.model)
            answerer = self.answerer(AdapterModels(load_adapters(model, self.dirs)), processor)
            self.answer(answerer, self.warm_items(), "warm-up")
            reference_answers(load_separate(base_dir, self.dirs, p.model), answerer, self.warm_items(),
                              self.adapter_of_stage, self.args.mode, p.evaluate, p.prompt)
        reset_peak_memory(self.device)
        t0 = time.perf_counter()
        base_model, processor = load_base(base_record(base_dir), p.model)
        answerer = self.answerer(AdapterModels(load_adapters(base_model, self.dirs)), processor)
        t1 = time.perf_counter()
        engine = self.answer(answerer, items, "engine")
        t2 = time.perf_counter()
        engine_peak = peak_memory(self.device)
        separate = load_separate(base_dir, self.dirs, p.model)
        t3 = time.perf_counter()
        reference = reference_answers(separate, answerer, items, self.adapter_of_stage, self.args.mode, p.evaluate,
                                      p.prompt)
        t4 = time.perf_counter()

        n, same = len(items), sum(a == b for a, b in zip(engine, reference))
        eng_qps, ref_qps = n / (t2 - t0), n / (t4 - t2)
        print(f"engine:    {t2 - t0:7.1f} s ({t1 - t0:.1f} s loading 1 base + {len(self.dirs)} adapters)  "
              f"{eng_qps:7.2f} QA/s")
        print(f"reference: {t4 - t2:7.1f} s ({t3 - t2:.1f} s loading {len(self.dirs)} bases)             "
              f"{ref_qps:7.2f} QA/s")
        print(f"speed-up:  {eng_qps / ref_qps:.1f}x   (answering only: {(t4 - t3) / (t2 - t1):.1f}x)")
        print(f"peak memory: {engine_peak} after the engine; {peak_memory(self.device)} after the reference")
        print(f"identical predictions: {same}/{n} ({same / n:.1%})")
        for i, (a, b) in enumerate(zip(engine, reference)):
            if a != b:
                print(f"  differs: {items[i].question!r} engine {a!r} reference {b!r}")
        return 0 if same == n else 1

    def synthetic(self) -> int:
        """The engine alone, on a random Qwen2-VL of the real 2B's size with one random adapter per name."""
        from surgvqa.infer.engine import AdapterModels

        items = self.items
        reset_peak_memory(self.device)
        t0 = time.perf_counter()
        peft_model, processor, dtype = self.synthetic_models()
        t1 = time.perf_counter()
        print(f"built in {t1 - t0:.1f} s: {peft_model.base_model.model.config.model_type} "
              f"{synthetic_parameters(peft_model):,} base parameters in {str(dtype).replace('torch.', '')} on "
              f"{self.device}, {len(self.dirs)} random adapters ({', '.join(self.dirs)})", flush=True)
        if self.args.warmup:  # untimed, with its own image cache, so the timed run computes every image itself
            self.answer(self.answerer(AdapterModels(peft_model), processor), self.warm_items(), "warm-up")
        answerer = self.answerer(AdapterModels(peft_model), processor)
        t2 = time.perf_counter()
        self.answer(answerer, items, "engine")
        t3 = time.perf_counter()
        print(f"engine:    {t3 - t2:7.1f} s answering (after {t1 - t0:.1f} s building)  "
              f"{len(items) / (t3 - t2):7.3f} QA/s")
        print(f"peak memory: {peak_memory(self.device)}")
        print("reference: skipped (synthetic base: random weights, nothing to agree on)")
        return 0

    def synthetic_models(self):
        """The synthetic 2B on the device with the approach's adapter names, each a fresh LoRA (lora section):
        random A, zero B, as PEFT starts training; the compute is a trained adapter's."""
        import torch

        from surgvqa.device import pick_dtype
        from surgvqa.model.base import tokenizer_corpus
        from surgvqa.model.lora import new_adapter
        from surgvqa.model.pretrain import describe_images
        from surgvqa.model.synthetic import synthetic_base

        p = self.params
        dtype = pick_dtype(p.model.dtype, self.device)
        corpus = tokenizer_corpus(self.train_rows, describe_images(self.train_rows), p.prompt)
        model, processor = synthetic_base(corpus, p.model.image_pixels, p.model.tiny.seed, dtype, self.device)
        peft_model = new_adapter(model, p.lora, p.lora.r, p.lora.alpha, p.train.seed)  # adapter "default"
        for k, name in enumerate(self.dirs):
            torch.manual_seed(p.train.seed + 1 + k)
            peft_model.add_adapter(name, peft_model.peft_config["default"])
        peft_model.set_adapter(next(iter(self.dirs)))
        peft_model.delete_adapter("default")  # new_adapter names its adapter "default"; the engine uses the names
        return peft_model.eval(), processor, dtype


def synthetic_parameters(peft_model) -> int:
    """The base's parameters (no LoRA matrices), a tied head counted once."""
    return sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" not in n)


def device_name(device) -> str:
    """The GPU's name, or the CPU's model name."""
    import platform

    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return f"cpu ({line.split(':', 1)[1].strip()})"
        except OSError:
            pass
        return f"cpu ({platform.processor() or platform.machine()})"
    return str(device)


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> str:
    """CUDA: the most memory tensors held since the last reset; elsewhere the process's peak resident set."""
    import resource

    import torch

    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"{peak_kib / 2**20:.2f} GiB (process peak RSS)"


if __name__ == "__main__":
    sys.exit(main())
