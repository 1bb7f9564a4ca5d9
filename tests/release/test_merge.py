"""The merge stage: full-precision merges that load on their own, lineage carried forward, the same bytes twice,
and the guards (quantized base, base hash, failed verification)."""

import dataclasses
import shutil

import pytest

from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json
from surgvqa.model.lineage import ADAPTER_WEIGHTS, read_lineage, sha256_file, sha256_weights
from surgvqa.params.release import ReleaseParams
from surgvqa.release import merge
from surgvqa.release.files import sha256_folder
from tests.model_fixtures import sections

pytestmark = pytest.mark.slow


def _merge(project, models, out, approach="baseline", **merge_changes):
    params = dataclasses.replace(project["params"], release=ReleaseParams(approach, "independent"),
                                 merge=dataclasses.replace(project["params"].merge, **merge_changes))
    return merge.run(models, project["splits"], project["root"] / "categorized" / "question_stages.csv", out,
                     **sections(params, merge.run))


def test_a_float32_merge_loads_on_its_own_and_carries_its_lineage(tiny_release):
    from surgvqa.model.processor import load_processor
    from surgvqa.release.candidate import load_merged_model

    folder, models = tiny_release["merged"] / "model", tiny_release["models"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "lineage.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin")) and not list(folder.glob("adapter_*"))  # no pickles, no adapter left
    model = load_merged_model(folder, "float32", "cpu")
    assert not any("lora_" in n for n, _ in model.named_parameters())
    assert load_processor(folder, 3136, None, False).tokenizer.chat_template
    lineage, adapter = read_json(folder / "lineage.json"), read_lineage(models / "baseline")
    assert lineage["adapter"]["adapter_sha256"] == sha256_file(models / "baseline" / ADAPTER_WEIGHTS)
    assert lineage["adapter"]["lineage"] == adapter and lineage["base"] == adapter["base"]
    assert lineage["training_quantization"] == {"quantized": False} and lineage["chain"] == []
    assert lineage["merge"]["dtype"] == "float32" and lineage["merge"]["onto"] == "original"
    assert lineage["merged_sha256"] == sha256_folder(folder) != sha256_weights(folder)  # every file, not only weights
    manifest = read_json(tiny_release["merged"] / "manifest.json")
    assert manifest["route"] == {"1": "model", "2": "model", "3": "model"}
    assert manifest["models"] == {"model": lineage["merged_sha256"]} and manifest["mode"] == "independent"


def test_merging_twice_gives_the_same_bytes(tiny_project, tiny_release, tmp_path):
    _merge(tiny_release, tiny_release["models"], tmp_path / "again")  # the same params as the release
    first = sorted(p.relative_to(tiny_release["merged"]) for p in tiny_release["merged"].rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert first == second and len(first) > 8
    assert all((tiny_release["merged"] / p).read_bytes() == (tmp_path / "again" / p).read_bytes() for p in first)


def test_sequential_releases_one_model_per_stage_and_curriculum_its_chain(tiny_project, tiny_adapters, tmp_path):
    manifest = _merge(tiny_project, tiny_adapters, tmp_path / "seq", approach="sequential")
    assert manifest["route"] == {"1": "stage_1", "2": "stage_2", "3": "stage_3"}
    for s in (1, 2, 3):
        lineage = read_json(tmp_path / "seq" / f"stage_{s}" / "lineage.json")
        assert lineage["adapter"]["adapter_sha256"] == read_lineage(tiny_adapters / "sequential" / f"stage_{s}")[
            "adapter_sha256"] and lineage["stages"] == [s]
    assert len(set(manifest["models"].values())) == 3
    _merge(tiny_project, tiny_adapters, tmp_path / "cur", approach="curriculum")
    chain = read_json(tmp_path / "cur" / "model" / "lineage.json")["chain"]
    assert [c["stage"] for c in chain] == [2, 1]
    assert [c["adapter_sha256"] for c in chain] == [read_lineage(tiny_adapters / "curriculum" / f"stage_{s}")[
        "adapter_sha256"] for s in (2, 1)]


def test_a_quantized_base_is_refused(tiny_project, tiny_adapters):
    from surgvqa.model.load import base_record, load_base

    four_bit = dataclasses.replace(tiny_project["params"].model, quantize="4bit")
    base_model, _ = load_base(base_record(tiny_adapters / "base"), four_bit)
    with pytest.raises(SurgvqaError, match="is quantized: merging into 4-bit"):
        merge.merge_adapter(base_model, tiny_adapters / "baseline", "original", {"quantized": False})


def test_a_base_with_another_hash_is_refused(tiny_project, tiny_adapters):
    from surgvqa.model.load import base_record

    other = {**base_record(tiny_adapters / "base"), "content_hash": "0" * 64}
    with pytest.raises(SurgvqaError, match="was trained on base weights .* retrain the adapter on this base"):
        merge.check_adapter(tiny_adapters / "baseline", other, tiny_project["params"].model)


def test_an_adapter_that_fails_verification_is_refused(tiny_project, tiny_adapters, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_adapters / "base", models / "base")
    shutil.copytree(tiny_adapters / "baseline", models / "baseline")
    weights = models / "baseline" / ADAPTER_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor's data
    weights.write_bytes(bytes(data))
    with pytest.raises(SurgvqaError, match=r"fails verify-adapter \(adapter hash"):
        _merge(tiny_project, models, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written is left behind


def test_nf4_roundtrip_applies_only_to_qlora_adapters(tiny_project, tiny_adapters):
    from surgvqa.model.load import base_record, load_base

    base_model, _ = load_base(base_record(tiny_adapters / "base"), tiny_project["params"].model)
    with pytest.raises(SurgvqaError, match="trained on a full-precision base.*merge.onto: original"):
        merge.merge_adapter(base_model, tiny_adapters / "baseline", "nf4_roundtrip", {"quantized": False})


def test_nf4_roundtrip_gives_the_weights_qlora_training_saw(tiny_project, tiny_adapters):
    import bitsandbytes as bnb

    from surgvqa.model.load import QUANT_SKIP_MODULES, base_record, load_base

    record, model_params = base_record(tiny_adapters / "base"), tiny_project["params"].model
    model, _ = load_base(record, model_params)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rounded = merge.nf4_roundtrip(model, QUANT_SKIP_MODULES)
    after = dict(model.named_parameters())
    quantized, _ = load_base(record, dataclasses.replace(model_params, quantize="4bit"))
    layers = {n: m for n, m in quantized.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert layers and rounded == len(layers)  # exactly the layers training quantized
    for name, layer in layers.items():  # each rounded weight is what the 4-bit layer computes with
        seen = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        assert after[f"{name}.weight"].shape == seen.shape
        assert (after[f"{name}.weight"] - seen).abs().max() < 1e-6, name
        assert not after[f"{name}.weight"].equal(before[f"{name}.weight"])
    assert all(after[n].equal(before[n]) for n in before if n.startswith(("model.visual", "lm_head")))


def test_the_candidate_hash_covers_everything_the_manifest_releases():
    from surgvqa.release.files import candidate_hash

    manifest = {"approach": "baseline", "mode": "independent", "route": {"1": "model"}, "models": {"model": "a" * 64},
                "serving": {"prompt": {"template": "{question}"}}}
    changed = [manifest | {"mode": "context"}, manifest | {"approach": "curriculum"}, manifest | {"route": {"1": "x"}},
               manifest | {"models": {"model": "b" * 64}}, manifest | {"serving": {"prompt": {"template": "{q}?"}}}]
    hashes = {candidate_hash(m) for m in [manifest, *changed]}
    assert len(hashes) == 6
    assert candidate_hash(manifest | {"merged_sha256": "f" * 64}) == candidate_hash(manifest)  # its own hash aside
