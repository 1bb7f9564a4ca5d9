"""Helpers shared by the promotion tests (tests/release/test_promote.py, test_promote_concurrent.py): distinct
candidates made from the tiny release, and the params sections naming a registry."""

import shutil

from surgvqa.io import read_json, read_jsonl, write_json, write_jsonl
from surgvqa.model.lineage import sha256_file
from surgvqa.params.tracking import TrackingParams
from surgvqa.params.typed import build, read_params_file
from surgvqa.release.files import candidate_hash
from tests.model_fixtures import REPO

NAME = "tiny-vqa"


def make_candidate(tiny_release, where, tag: str, gate_passed: bool = True, strict=None) -> dict:
    """A copy of the tiny release as a distinct candidate: its own merged-model hash, its predictions' strict
    flags replaced by `strict(row)` when given, and a gate report that passed or failed."""
    merged, release = where / "merged", where / "release"
    shutil.copytree(tiny_release["merged"], merged)
    shutil.copytree(tiny_release["release"], release)
    manifest = read_json(merged / "manifest.json") | {"variant": tag}  # another candidate: another manifest
    manifest["merged_sha256"] = candidate_hash(manifest)
    write_json(merged / "manifest.json", manifest)
    test_sha256 = sha256_file(tiny_release["splits"] / "test.jsonl")
    evaluation = read_json(release / "evaluation.json")
    evaluation["candidate"]["merged_sha256"] = manifest["merged_sha256"]
    write_json(release / "evaluation.json", evaluation)
    if strict is not None:
        write_jsonl(release / "predictions.jsonl", [{**r, "strict": strict(r)}
                                                    for r in read_jsonl(release / "predictions.jsonl")])
    checks = [{"name": "strict accuracy", "passed": gate_passed, "value": 0.5, "threshold": 0.4,
               "detail": "strict_overall = 0.5 >= 0.4" if gate_passed else "threshold check failed"}]
    write_json(where / "gate.json", {"passed": gate_passed, "failed": [] if gate_passed else ["strict accuracy"],
                                     "candidate": {"merged_sha256": manifest["merged_sha256"],
                                                   "test_sha256": test_sha256},
                                     "checks": checks})
    return {"merged_dir": merged, "release_dir": release, "gate_path": where / "gate.json",
            "test_file": tiny_release["splits"] / "test.jsonl", "report_path": where / "promotion.json"}


def sections(uri: str) -> dict:
    """The repo's `promote` and `tracking` params sections (as parsed YAML) on the tiny registered model at `uri`."""
    raw = read_params_file(REPO / "params.yaml")
    return {"promote": {**raw["promote"], "registered_model": NAME},
            "tracking": {**raw["tracking"], "uri": uri, "experiment": "tiny"}}


def tracking_params(uri: str) -> TrackingParams:
    """The repo's tracking params on the registry at `uri`."""
    return build(TrackingParams, sections(uri)["tracking"], "tracking")
