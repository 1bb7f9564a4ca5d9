"""params.yaml is the one home of every value: complete, checked key by key, and never shadowed by a default."""

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from surgvqa.params.ingest import IngestParams
from surgvqa.params.schema import Params, load_params
from surgvqa.params.typed import ParamsError, load_sections, sections_of
from tests.conftest import REPO


def _repo_yaml() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _merged(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = _merged(base.get(k) or {}, v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def test_repo_params_are_complete_and_load(repo):
    p = load_params(repo / "params.yaml")
    assert p.categorize.backend == "keyword" and p.categorize.llm.model == "Qwen/Qwen2.5-7B-Instruct"
    assert p.categorize.llm.prompt.startswith("You are a medical AI assistant.")
    assert p.categorize.llm.prompt.endswith("Respond with only: Stage: [1, 2, or 3]")  # block scalar, no newline
    assert (p.split.train, p.split.val, p.split.test) == (0.7, 0.15, 0.15)
    assert p.validate.stage_share.for_stage(3) == (0.02, 0.25)
    assert p.evaluate.modes == ["context", "independent"]


def _section_classes(cls=Params, seen=None) -> set[type]:
    """Every dataclass reachable from the Params schema (sections and their nested parts)."""
    import typing

    seen = set() if seen is None else seen
    for f in dataclasses.fields(cls):
        for annotation in (typing.get_type_hints(cls)[f.name], *typing.get_args(typing.get_type_hints(cls)[f.name])):
            if dataclasses.is_dataclass(annotation) and annotation not in seen:
                seen.add(annotation)
                _section_classes(annotation, seen)
    return seen


def test_no_section_field_has_a_default_so_params_yaml_is_the_only_value():
    shadowed = [f"{cls.__name__}.{f.name}" for cls in _section_classes() for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert not shadowed, f"defaults in the code would be a second value beside params.yaml: {shadowed}"


def _leaf_keys(node, out=None) -> set[str]:
    out = set() if out is None else out
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(v, (dict, list)) or (isinstance(v, list) and not any(isinstance(i, dict) for i in v)):
                out.add(k)
            _leaf_keys(v, out)
    elif isinstance(node, list):
        for v in node:
            _leaf_keys(v, out)
    return out


def test_no_function_carries_a_default_for_a_params_value():
    """A keyword default named like a params.yaml key (`seed=0`, `batch_size=8`) is a second home for a value."""
    keys = _leaf_keys(_repo_yaml())
    found = []
    for path in sorted((REPO / "src" / "surgvqa").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                found += [f"{path.relative_to(REPO)}:{node.lineno} {node.name}({a.arg}=...)" for a, d in pairs
                          if a.arg in keys and not (isinstance(d, ast.Constant) and d.value is None)]
    assert not found, f"defaults that shadow params.yaml keys: {found}"


def test_a_missing_key_or_section_is_an_error_naming_it(tmp_path):
    data = _repo_yaml()
    del data["split"]["seed"]
    with pytest.raises(ParamsError, match=r"split\.seed: missing"):
        load_params(_write(tmp_path, data))
    del data["split"]
    with pytest.raises(ParamsError, match="split: missing"):
        load_params(_write(tmp_path, data))


@pytest.mark.parametrize("change, named", [
    ({"split": {"trian": 0.7}}, "split.trian: unknown key"),
    ({"categorize": {"llm": {"batchsize": 4}}}, "categorize.llm.batchsize: unknown key"),
    ({"categorize": {"backend": "gpt"}}, "categorize.backend: expected one of ['keyword', 'llm']"),
    ({"ingest": {"max_bad_fraction": "lots"}}, "ingest.max_bad_fraction: expected float"),
    ({"ingest": {"max_bad_fraction": 1.5}}, "ingest.max_bad_fraction: must be between 0 and 1"),
    ({"ingest": {"conflicting_answers": "first"}}, "ingest.conflicting_answers: expected one of"),
    ({"ingest": {"max_image_pixels": 0}}, "ingest.max_image_pixels: must be"),
    ({"split": {"train": 0.9}}, "split.train + val + test: must sum to 1"),
    ({"sample": {"images": 0}}, "sample.images: must be at least 1"),
    ({"validate": {"stage_share": {"stage_1": [0.5, 0.1]}}}, "validate.stage_share.stage_1: must be [min, max]"),
    ({"categorize": {"llm": {"prompt": "no placeholder"}}}, "categorize.llm.prompt: must contain"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"categorize": {"llm": {"top_p": 7}}}, "categorize.llm.top_p: must be in (0, 1]"),
    ({"categorize": {"llm": {"max_unparsed_fraction": 2}}}, "categorize.llm.max_unparsed_fraction: must be between"),
    ({"split": {"train": 0.85, "test": 0.0}}, "split.test: must be above 0"),
    ({"evaluate": {"modes": ["sequential"]}}, "evaluate.modes[0]: expected one of ['context', 'independent']"),
    ({"evaluate": {"decoding": "beam"}}, "evaluate.decoding: expected one of ['constrained', 'score', 'free']"),
    ({"launch": {"command": "bash -c"}}, "launch.command: must start with one of"),
    ({"launch": {"command": "accelerate --num_processes 2"}}, "launch.command: must start with one of"),
    ({"launch": {"command": "torchrun --nproc_per_node 2 -m"}}, "launch.command: leave out -m"),
])
def test_wrong_key_or_value_is_an_error_naming_the_key(tmp_path, change, named):
    with pytest.raises(ParamsError) as e:
        load_params(_write(tmp_path, _merged(_repo_yaml(), change)))
    assert named in str(e.value)


def test_a_stage_loads_only_the_sections_it_declares(tmp_path):
    def stage(out: Path, ingest: IngestParams):  # the shape of every stage's `run`
        return ingest

    assert sections_of(stage) == {"ingest": IngestParams}
    values = {"max_bad_fraction": 0.1, "max_image_pixels": 16777216, "conflicting_answers": "merge"}
    only_ingest = _write(tmp_path, {"ingest": values})
    assert load_sections(only_ingest, stage) == {"ingest": IngestParams(**values)}
    with pytest.raises(ParamsError, match="ingest: missing section"):
        load_sections(_write(tmp_path, {"split": {}}), stage)


def test_a_section_that_is_not_a_mapping_is_an_error_naming_it(tmp_path):
    def stage(ingest: IngestParams):
        return ingest

    with pytest.raises(ParamsError, match="ingest: expected a mapping, got float"):
        load_sections(_write(tmp_path, {"ingest": 0.05}), stage)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ParamsError, match="--params"):
        load_params(tmp_path / "nope.yaml")


def test_the_tracking_uri_comes_from_the_environment_when_set(monkeypatch):
    """CI passes its MLflow server as SURGVQA_TRACKING_URI; MLFLOW_TRACKING_URI (which mlflow.set_tracking_uri
    writes) never overrides params.yaml."""
    from surgvqa.params.tracking import TrackingParams

    tracking = TrackingParams(uri="sqlite:///mlflow.db", experiment="surgvqa", request_timeout=5, request_retries=2)
    monkeypatch.delenv("SURGVQA_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert tracking.resolved_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("SURGVQA_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolved_uri() == "http://127.0.0.1:5000"


@pytest.mark.parametrize("command", ["python", "torchrun --standalone --nproc_per_node 4",
                                     "accelerate launch --multi_gpu --num_processes 4"])
def test_a_launcher_of_several_processes_is_accepted(command):
    from surgvqa.params.launch import LaunchParams

    assert LaunchParams(command).command == command
