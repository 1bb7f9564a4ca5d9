from pathlib import Path

import pytest

from surgvqa.params import DEFAULT_LLM_PROMPT, Params, ParamsError, load_params


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_repo_params_load_with_documented_defaults(repo):
    p = load_params(repo / "params.yaml")
    assert p.categorize.backend == "keyword"
    assert p.categorize.llm.model == "Qwen/Qwen2.5-7B-Instruct"
    assert p.categorize.llm.prompt == DEFAULT_LLM_PROMPT
    assert (p.split.train, p.split.val, p.split.test) == (0.7, 0.15, 0.15)
    assert p.validate.stage_share.for_stage(3) == (0.02, 0.25)


def test_missing_sections_take_defaults(tmp_path):
    assert load_params(_write(tmp_path, "split:\n  seed: 3\n")).split.seed == 3
    assert load_params(_write(tmp_path, "")) == Params()
    assert load_params(_write(tmp_path, "ingest:\n")) == Params()


@pytest.mark.parametrize("text, named", [
    ("split:\n  trian: 0.7\n", "split.trian: unknown key"),
    ("categorize:\n  llm:\n    batchsize: 4\n", "categorize.llm.batchsize: unknown key"),
    ("categorize:\n  backend: gpt\n", "categorize.backend: expected one of ['keyword', 'llm']"),
    ("ingest:\n  max_bad_fraction: lots\n", "ingest.max_bad_fraction: expected float"),
    ("ingest:\n  max_bad_fraction: 1.5\n", "ingest.max_bad_fraction: must be between 0 and 1"),
    ("split:\n  train: 0.9\n", "split.train + val + test: must sum to 1"),
    ("data:\n  sample:\n    images: 0\n", "data.sample.images: must be at least 1"),
    ("validate:\n  stage_share:\n    stage_1: [0.5, 0.1]\n", "validate.stage_share.stage_1: must be [min, max]"),
    ("categorize:\n  llm:\n    prompt: no placeholder\n", "categorize.llm.prompt: must contain"),
    ("bogus: 1\n", "bogus: unknown key"),
    ("categorize:\n  llm:\n    top_p: 7\n", "categorize.llm.top_p: must be in (0, 1]"),
    ("split:\n  train: 0.85\n  test: 0.0\n", "split.test: must be above 0"),
])
def test_wrong_key_or_value_is_an_error_naming_the_key(tmp_path, text, named):
    with pytest.raises(ParamsError) as e:
        load_params(_write(tmp_path, text))
    assert named in str(e.value)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ParamsError, match="--params"):
        load_params(tmp_path / "nope.yaml")
