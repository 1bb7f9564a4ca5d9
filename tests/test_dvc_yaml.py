"""dvc.yaml's dependencies cannot drift from the code: every stage's code deps are exactly the import closure of
the module its command runs (plus the package data that code reads), and its params are exactly the sections
that module's `run` declares. The README's stage tables name every stage and its module."""

import re

import pytest
import yaml

from tests.conftest import REPO
from tests.pipeline_deps import expand_foreach, expected, import_closure, is_code, stage_module

STAGES = expand_foreach(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _declared(stage: dict) -> tuple[set[str], set[str]]:
    deps = {d for d in stage.get("deps", []) if is_code(d)}
    params = set()
    for p in stage.get("params", []):
        params |= set(p) if isinstance(p, dict) else {p}
    return deps, params


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_the_code_it_runs_and_the_sections_it_reads(name):
    stage = STAGES[name]
    want_deps, want_params = expected(stage["cmd"])
    deps, params = _declared(stage)
    problems = []
    if want_deps - deps:
        problems.append(f"deps miss {sorted(want_deps - deps)}")
    if deps - want_deps:
        problems.append(f"deps list code it does not run {sorted(deps - want_deps)}")
    if want_params - params:
        problems.append(f"params miss sections {sorted(want_params - params)} (its run() reads them)")
    if params - want_params:
        problems.append(f"params list sections its run() does not read {sorted(params - want_params)}")
    assert not problems, f"dvc.yaml stage {name}: " + "; ".join(problems)


def test_a_removed_dependency_is_named(tmp_path):
    """The check above can fail: drop one dep of one stage and it says which stage misses which file."""
    stage = dict(STAGES["train_curriculum@2"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/surgvqa/model/prompts.py"]
    stage["params"] = [p for p in stage["params"] if p != "tracking"]
    want_deps, want_params = expected(stage["cmd"])
    deps, params = _declared(stage)
    assert want_deps - deps == {"src/surgvqa/model/prompts.py"} and want_params - params == {"tracking"}


def test_the_closure_follows_lazy_imports_and_package_inits():
    files = {str(p.relative_to(REPO)) for p in import_closure("surgvqa.evaluate.evaluate")}
    assert "src/surgvqa/infer/shared_prefix.py" in files  # imported inside run(), not at the top
    assert {"src/surgvqa/__init__.py", "src/surgvqa/infer/__init__.py"} <= files
    assert "src/surgvqa/cli.py" not in files and "src/surgvqa/params/schema.py" not in files


def test_every_stage_runs_a_module_named_after_it():
    for name, stage in STAGES.items():
        module = stage_module(stage["cmd"]).rsplit(".", 1)[1]
        base = name.split("@")[0]
        assert base == module or base.startswith(module + "_"), f"{name} runs {module}: name one after the other"


def test_the_readme_stage_tables_match_dvc_yaml():
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)(?:@[^`]*)?` \| `python -m (surgvqa[\w.]+)[^`]*` \|", readme, re.M)
    documented = dict(rows)
    for name, stage in STAGES.items():
        base = name.split("@")[0]
        assert documented.get(base) == stage_module(stage["cmd"]), f"README's stage tables: {base} is missing or wrong"
    assert set(documented) == {n.split("@")[0] for n in STAGES}, "README documents a stage dvc.yaml does not have"
