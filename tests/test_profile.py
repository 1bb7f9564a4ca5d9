"""Profiles: every one loads through the typed loader, the committed params.yaml and data.dvc are exactly the
embedded profile's, a switch writes what DVC tracks, and a wrong profile is refused before anything is written."""

import shutil

import pytest
import yaml

from surgvqa import profile
from surgvqa.errors import SurgvqaError
from surgvqa.params.schema import load_params


def _copy(repo, tmp_path):
    shutil.copytree(repo / "profiles", tmp_path / "profiles")
    for name in ("params.yaml", "data.dvc"):
        shutil.copy(repo / name, tmp_path / name)
    return tmp_path


def test_every_profile_loads_through_the_typed_loader(repo):
    names = profile.names(repo / "profiles")
    assert names[0] == profile.EMBEDDED and {"test", "gpu"} <= set(names)
    for name in names:
        params = profile.load(name, repo / "profiles")
        assert params.gate.min_items >= 1  # a whole, checked Params
    gpu = profile.load("gpu", repo / "profiles")
    assert (gpu.model.base, gpu.model.quantize, gpu.model.dtype) == ("Qwen/Qwen2-VL-2B-Instruct", "4bit", "bfloat16")
    assert (gpu.lora.r, gpu.lora.alpha, gpu.train.stage_learning_rates) == (16, 32, [5.0e-5, 3.5e-5, 2.5e-5])
    assert (gpu.merge.dtype, gpu.merge.onto) == ("bfloat16", "nf4_roundtrip")
    test = profile.load("test", repo / "profiles")
    assert test.train.max_steps == 2 and test.gate.significance is None and test.sample.images == 120


def test_the_committed_params_and_data_are_exactly_the_embedded_profile(repo):
    assert profile.check(repo) == profile.EMBEDDED
    text = (repo / "params.yaml").read_text()
    assert text.split("\n", 1)[1] == (repo / "profiles" / "embedded" / "params.yaml").read_text()  # comments too


def test_a_switch_writes_the_overrides_and_the_data_and_switches_back(repo, tmp_path):
    root = _copy(repo, tmp_path)
    changed = profile.use("test", root)
    assert "train.max_steps" in changed and "gate.significance" in changed and "data.dvc" in changed
    assert "lora.r" not in changed  # only what the profile names
    assert profile.active(root / "params.yaml") == "test" and profile.check(root) == "test"
    assert load_params(root / "params.yaml").train.max_steps == 2
    assert (root / "data.dvc").read_text() == (repo / "profiles" / "test" / "data.dvc").read_text()
    assert yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["path"] == "data/raw"
    assert profile.use(profile.EMBEDDED, root)  # back: the same values as before, byte for byte
    assert (root / "params.yaml").read_text() == (repo / "params.yaml").read_text()
    assert (root / "data.dvc").read_text() == (repo / "data.dvc").read_text()
    assert profile.use(profile.EMBEDDED, root) == []


def test_a_hand_edit_is_not_a_profile(repo, tmp_path):
    root = _copy(repo, tmp_path)
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("r: 8", "r: 4"))
    with pytest.raises(SurgvqaError, match="differs from profile embedded"):
        profile.check(root)


@pytest.mark.parametrize(("override", "message"), [
    ("lora:\n  rank: 4\n", "lora.rank: not a key of the embedded default"),
    ("lora:\n  r: many\n", "profile bad: lora.r"),
    ("- a list\n", "must be a mapping"),
])
def test_a_wrong_profile_is_refused_before_anything_is_written(repo, tmp_path, override, message):
    root = _copy(repo, tmp_path)
    (root / "profiles" / "bad").mkdir()
    (root / "profiles" / "bad" / "params.yaml").write_text(override)
    shutil.copy(root / "data.dvc", root / "profiles" / "bad" / "data.dvc")
    before = (root / "params.yaml").read_text()
    with pytest.raises(SurgvqaError, match=message):
        profile.use("bad", root)
    assert (root / "params.yaml").read_text() == before


def test_a_profile_without_its_data_never_falls_back_to_another(repo, tmp_path):
    root = _copy(repo, tmp_path)
    (root / "profiles" / "gpu" / "data.dvc").unlink(missing_ok=True)  # as until the real data is imported
    with pytest.raises(SurgvqaError, match="profiles/gpu/data.dvc is missing.*dvc push data.dvc"):
        profile.use("gpu", root)
    assert profile.active(root / "params.yaml") == profile.EMBEDDED
    with pytest.raises(SurgvqaError, match="no profile 'gpus'; the profiles are embedded, gpu, test"):
        profile.use("gpus", root)


def test_dvc_params_diff_shows_a_switch(repo, tmp_path):
    """The switch is what DVC tracks: `dvc params diff` against the last commit lists the changed values."""
    import json
    import subprocess
    import sys

    from tests.scratch import sh

    root = _copy(repo, tmp_path)
    shutil.copy(repo / "dvc.yaml", root / "dvc.yaml")
    sh(["git", "init", "-q"], root)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "embedded"], root)
    profile.use("test", root)
    out = subprocess.run([sys.executable, "-m", "dvc", "params", "diff", "--json"], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    diff = json.loads(out)["params.yaml"]
    assert (diff["train.max_steps"]["old"], diff["train.max_steps"]["new"]) == (-1, 2)
    assert (diff["sample.images"]["old"], diff["sample.images"]["new"]) == (300, 120) and "lora.r" not in diff
