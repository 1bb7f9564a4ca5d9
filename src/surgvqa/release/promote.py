"""`surgvqa promote`: register the merged candidate in the MLflow registry and move `champion` only past the gate.

A command after `dvc repro`, not a stage: it changes shared state (the registry). It:
1. refuses a gate report made for another merged model or test split than the ones on disk;
2. registers the candidate as a version of `promote.registered_model` (once: a rerun finds it by its
   merged-model hash), as a pyfunc model around the merged folder, with the candidate's predictions, evaluation
   and gate report as run artifacts, and tags: lineage, every gate result, merged-model and test-split hashes,
   git commit;
3. compares it with the current champion on the same test items (paired wins/ties/losses, exact McNemar, and
   no stage dropping more than `promote.max_stage_drop`); a champion evaluated on another test split is not
   comparable, and that fails closed;
4. sets `challenger` on the version, and moves `champion` only when the gate and the comparison both passed for
   this very candidate; otherwise exits non-zero with champion where it was. Each attempt is recorded in the
   registered model's history tags; the result goes to reports/promotion.json and the version's tags.

Concurrency (two `surgvqa promote` at once; tests/release/test_promote_concurrent.py runs real ones against a
real `mlflow server`). MLflow's registry API has no compare-and-set on aliases: `set_registered_model_alias` is
an upsert, last writer wins. What is atomic is one request: `create_model_version` writes the version and its
tags in one transaction (version numbers come from the store, retried on conflict), and each tag write is an
upsert of its own key. Hence:
- `champion` never points at a version whose gate failed, whatever the interleaving: a failed gate never writes
  `champion`; the only writers (`registry.move_champion`, from promote and rollback) refuse a version whose
  `gate.passed` tag, written with the version and never rewritten, is not `true`; and promote re-reads champion
  after moving it and checks its tag again (`registry.checked_champion`), so a champion set outside surgvqa to a
  failed version is an error, not a silent result.
- every attempt is recorded: it is a version of its own (with its gate and `promotion.*` tags) and a history
  event under a key of its own (`history.<ns>.<pid>`), so concurrent attempts cannot overwrite each other's record.
- champion moves only from the version the candidate was compared with: just before moving it, promote reads it
  again and, if a concurrent promotion or rollback moved it meanwhile, refuses (fail closed, rerun to compare
  with the new champion). This is a check then an act, not an atomic one: the re-read and the write are two
  requests, and two passing promotions whose re-reads both fall before either write (milliseconds apart) both
  move champion, the later write winning. The overwritten one prints `superseded` when its read-back comes after
  the overwrite (else nothing tells it); `rollback` refuses to guess when the history's last move is not the
  champion. (tests/release/test_promote.py::test_champion_moved_during_a_promotion forces both branches.) No
  lock is built on the registry for that window: CI's only promoting job runs one at a time (gpu-validation.yml's
  concurrency group), and a lock made of registry writes would need expiry and ownership checks of its own.
- `challenger` is last writer wins too: it names the latest attempt that set it, passing or not.
- the first two promotes on an empty registry both create the registered model and the experiment: the one that
  loses that race (RESOURCE_ALREADY_EXISTS) uses the other's (`registry.ensure_registered_model`,
  `registry.experiment_id`).
- two processes promoting the same candidate at once may both register it; both then use the lowest version
  with its hash, and the other is tagged `duplicate_of`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from surgvqa import entry, profile
from surgvqa import tracking as tracking_runs
from surgvqa.errors import SurgvqaError
from surgvqa.io import read_json, read_jsonl, write_json
from surgvqa.model.lineage import LINEAGE_FILE, git_commit
from surgvqa.names import STAGE_IDS
from surgvqa.params.promote import PromoteParams
from surgvqa.params.tracking import TrackingParams
from surgvqa.release import registry
from surgvqa.release.files import EVALUATION, PREDICTIONS
from surgvqa.release.gate import fresh_report

RUN_ARTIFACTS = "release"  # the release run's folder holding predictions.jsonl, evaluation.json, gate.json


def compare_with_champion(candidate_rows: list[dict], champion_rows: list[dict], max_stage_drop: float) -> dict:
    """The candidate against the champion on the same items: passes when wins >= losses and no stage's strict
    accuracy drops by more than `max_stage_drop`."""
    from surgvqa.evaluate.stats import accuracy, paired

    def key(r):
        return r["img_id"], r["question"], r["mode"]

    champion = {key(r): r for r in champion_rows}
    if set(champion) != {key(r) for r in candidate_rows} or len(champion) != len(candidate_rows):
        return {"passed": False, "detail": "the champion's predictions cover other items or another mode: not "
                "comparable; compare on the same test split and release.mode, or choose the champion by hand with "
                "`surgvqa rollback --to VERSION`"}
    pairs = [(r, champion[key(r)]) for r in candidate_rows]
    result = paired([c["strict"] for c, _ in pairs], [h["strict"] for _, h in pairs])
    drops = {}
    for s in STAGE_IDS:
        on_stage = [(c, h) for c, h in pairs if c["stage"] == s]
        if on_stage:
            drops[s] = accuracy([h["strict"] for _, h in on_stage]) - accuracy([c["strict"] for c, _ in on_stage])
    worst = max(drops, key=drops.get) if drops else None
    passed = result.wins >= result.losses and all(d <= max_stage_drop for d in drops.values())
    detail = (f"wins {result.wins}, ties {result.ties}, losses {result.losses} (exact McNemar p = "
              f"{result.p_value:.4g}); largest stage drop {drops.get(worst, 0.0):+.3f} on stage {worst} "
              f"(limit {max_stage_drop:g})")
    return {"passed": passed, "wins": result.wins, "ties": result.ties, "losses": result.losses,
            "p_value": result.p_value, "stage_drop": {str(s): d for s, d in drops.items()}, "detail": detail}


def _champion_rows(champion, test_sha256: str, tracking_uri: str) -> tuple[list[dict] | None, str]:
    """The champion's predictions, or None and why they cannot be compared."""
    import mlflow

    if champion.tags.get("test_split_sha256") != test_sha256:
        return None, (f"champion v{str(champion.version)} was evaluated on test split "
                      f"{str(champion.tags.get('test_split_sha256'))[:12]}, the candidate on {test_sha256[:12]}: "
                      "not comparable (fail closed); re-evaluate the champion on this split, or choose the champion "
                      "by hand with `surgvqa rollback --to VERSION`")
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=champion.run_id,
                                                   artifact_path=f"{RUN_ARTIFACTS}/{PREDICTIONS}", dst_path=tmp,
                                                   tracking_uri=tracking_uri)
        return read_jsonl(Path(path)), ""


def version_tags(manifest: dict, lineages: dict[str, dict], gate: dict, test_sha256: str) -> dict[str, str]:
    """Tags of a registered version: lineage, every gate result, hashes, git commit."""
    lineage = {"approach": manifest["approach"], "mode": manifest["mode"],
               "models": {name: {"adapter_sha256": rec["adapter"]["adapter_sha256"],
                                 "parents": [p["adapter_sha256"] for p in rec["chain"]],
                                 "merged_sha256": rec["merged_sha256"]} for name, rec in lineages.items()}}
    first = next(iter(lineages.values()))
    commit = git_commit()
    tags = {"merged_sha256": manifest["merged_sha256"], "test_split_sha256": test_sha256,
            "approach": manifest["approach"], "mode": manifest["mode"], "git_commit": str(commit["sha"]),
            # A CI run is dirty by design (`surgvqa profile use` rewrites params.yaml): the profile says which.
            "git_dirty": str(commit["dirty"]).lower(), "profile": profile.active() or "none",
            "base_model": first["base"]["name"],
            "base_sha256": first["base"]["content_hash"],
            "training_quantization": json.dumps(first["training_quantization"], sort_keys=True),
            "merge": json.dumps(first["merge"], sort_keys=True), "lineage": json.dumps(lineage, sort_keys=True),
            "gate.passed": str(bool(gate["passed"])).lower()}
    for check in gate["checks"]:
        tags[f"gate.{registry.tag_key(check['name'])}"] = f"{'ok' if check['passed'] else 'FAILED'}: {check['detail']}"
    return {k: registry.tag_value(v) for k, v in tags.items()}


def register(client, name: str, merged_dir: Path, release_dir: Path, gate_path: Path, manifest: dict,
             tags: dict[str, str], tracking: TrackingParams):
    """Log the release run (the pyfunc model and the release's reports) and register it as a new version.

    Only the client API is used: MLflow's fluent calls would set process-wide tracking and registry URIs (and
    their environment variables, which subprocesses inherit) as a side effect."""
    import time

    import mlflow.pyfunc
    from mlflow.entities import Metric

    import surgvqa
    from surgvqa.release.pyfunc import MergedVQAModel, requirements, signature

    experiment_id = registry.experiment_id(client, tracking.experiment)
    tracking_runs.describe_experiment(client, experiment_id)
    standard = tracking_runs.run_tags("release", f"release-{manifest['approach']}", None,
                                      f"Release of the merged `{manifest['approach']}` model "
                                      f"(merged_sha256 `{manifest['merged_sha256'][:12]}`), registered as `{name}`.")
    run = client.create_run(experiment_id, run_name=tracking_runs.display_name(standard),
                            tags=standard | {"approach": manifest["approach"],
                                             "merged_sha256": manifest["merged_sha256"]})
    run_id = run.info.run_id
    try:
        evaluation = read_json(release_dir / EVALUATION)
        values = {**evaluation["metrics"], **{f"fidelity_{k}": v for k, v in evaluation["fidelity"].items()}}
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()
                                          if isinstance(v, (int, float)) and not isinstance(v, bool)])
        client.log_artifacts(run_id, str(release_dir), RUN_ARTIFACTS)
        client.log_artifact(run_id, str(gate_path), RUN_ARTIFACTS)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            mlflow.pyfunc.save_model(str(model_dir), python_model=MergedVQAModel(),
                                     artifacts={"merged": str(merged_dir)},
                                     code_paths=[str(Path(surgvqa.__file__).parent)],
                                     pip_requirements=requirements(), signature=signature())
            client.log_artifacts(run_id, str(model_dir), "model")
        version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
                                              tags=tags)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return version


def rolled_back_from(events: list[dict], version: str) -> bool:
    """Whether the latest event about `version` moving champion is a rollback away from it."""
    moves = [e for e in events if e["action"] in ("promote", "rollback") and version in (e["version"], e["previous"])]
    return bool(moves) and moves[-1]["action"] == "rollback" and moves[-1]["previous"] == version


def run(merged_dir: Path, release_dir: Path, gate_path: Path, test_file: Path, report_path: Path,
        promote: PromoteParams, tracking: TrackingParams) -> dict:
    """Register the candidate, compare it with the champion, move the aliases; raises when not promoted."""
    name = promote.registered_model
    # First, within seconds, when the server does not answer (hashing a 2B candidate below reads GBs). The
    # requests after it are not bounded by the tracking params: uploading its weights may rightly take longer.
    tracking_runs.check_server(tracking)
    gate, manifest = fresh_report(gate_path, merged_dir, test_file)  # what is registered is what was gated
    test_sha256 = gate["candidate"]["test_sha256"]
    if read_json(release_dir / EVALUATION)["candidate"]["merged_sha256"] != manifest["merged_sha256"]:
        raise SurgvqaError(f"{release_dir / EVALUATION} is stale: run `dvc repro`; nothing was registered")
    lineages = {n: read_json(merged_dir / n / LINEAGE_FILE) for n in manifest["models"]}
    client = registry.client_for(tracking.resolved_uri())
    registry.ensure_registered_model(client, name)
    tags = version_tags(manifest, lineages, gate, test_sha256)
    champion = registry.checked_champion(client, name)  # before registering: a failed champion is named first
    version = registry.version_of_candidate(client, name, manifest["merged_sha256"])
    if version is None:
        version = register(client, name, merged_dir, release_dir, gate_path, manifest, tags, tracking)
        first = registry.version_of_candidate(client, name, manifest["merged_sha256"])
        if str(first.version) != str(version.version):  # a concurrent promote registered it first: use that one
            client.set_model_version_tag(name, str(version.version), "duplicate_of", str(first.version))
            version = first
    # A rerun finds the version registered before and keeps its tags: they record the gate it was registered
    # with. A different verdict now (thresholds changed) is refused below, and a failing champion is named.
    number = str(version.version)
    previous = str(champion.version) if champion is not None else None
    already = previous == number
    recorded = client.get_model_version(name, number).tags.get("gate.passed")
    if recorded != str(bool(gate["passed"])).lower():
        hint = " It is the champion: `surgvqa rollback` moves champion to the one before it." if already else ""
        raise SurgvqaError(f"{name} v{number} was registered with gate.passed = {recorded}, but {gate_path} now says "
                           f"{str(bool(gate['passed'])).lower()} (the gate's thresholds or inputs changed).{hint} "
                           "Nothing was changed")
    if rolled_back_from(registry.history(client, name), number):
        raise SurgvqaError(f"{name} v{number} was rolled back from champion; promoting the same candidate again "
                           f"would undo that silently. Reinstate it deliberately with `surgvqa rollback --to {number}`")

    if already:
        comparison = {"passed": True, "detail": f"v{number} is already champion"}
    elif champion is not None:
        champion_rows, why = _champion_rows(champion, test_sha256, tracking.resolved_uri())
        comparison = (compare_with_champion(read_jsonl(release_dir / PREDICTIONS), champion_rows,
                                            promote.max_stage_drop) if champion_rows is not None
                      else {"passed": False, "detail": why})
    else:
        comparison = {"passed": True, "detail": "no champion yet"}
    client.set_registered_model_alias(name, registry.CHALLENGER, number)

    promoted = bool(gate["passed"]) and comparison["passed"]
    reasons = ([] if gate["passed"] else [f"gate failed: {', '.join(gate['failed'])}"]) + (
        [] if comparison["passed"] else [f"against champion v{previous}: {comparison['detail']}"])
    if promoted and not already:
        moved, current = registry.move_champion(client, name, number, expected=previous)
        if not moved and current == number:  # a concurrent promote of this very candidate moved it first
            already = True
        elif not moved:
            promoted = False
            reasons.append(f"champion moved from {_v(previous)} to {_v(current)} while v{number} was compared with "
                           f"{_v(previous)} (a concurrent promotion or rollback): nothing changed; run `surgvqa "
                           f"promote` again to compare with {_v(current)}")
    if not already:
        registry.record_event(client, name, {"action": "promote" if promoted else "refused",
                                             "version": number, "previous": previous,
                                             "gate_passed": bool(gate["passed"]), "reasons": reasons})
    outcome = {"promotion.passed": str(promoted).lower(), "promotion.vs_champion": comparison["detail"]}
    for key, value in outcome.items():
        client.set_model_version_tag(name, number, key, registry.tag_value(value))
    champion_now = registry.checked_champion(client, name)
    if promoted and champion_now is not None and str(champion_now.version) != number:
        print(f"promote: v{number} was made champion, then superseded by v{champion_now.version} (a concurrent "
              "promotion or rollback moved it after this one)")
    report = {"registered_model": name, "version": number, "merged_sha256": manifest["merged_sha256"],
              "test_sha256": test_sha256, "gate_passed": bool(gate["passed"]), "vs_champion": comparison,
              "previous_champion": previous, "promoted": promoted,
              "champion": str(champion_now.version) if champion_now else None, "reasons": reasons,
              "tracking_uri": tracking_runs.without_credentials(tracking.resolved_uri())}
    write_json(report_path, report)
    print(f"promote: {name} v{number} (challenger); vs champion: {comparison['detail']}")
    if not promoted:
        now = report["champion"]
        where = (f"champion stays at {_v(now)}" if now == previous
                 else f"champion is {_v(now)} (moved by another promotion or rollback meanwhile)")
        raise SurgvqaError(f"not promoted: {'; '.join(reasons)}. {where} (details: {report_path})")
    return report


def _v(version: str | None) -> str:
    return f"v{version}" if version is not None else "none"


def main(argv: list[str] | None = None) -> int:
    """`surgvqa promote`."""
    parser = entry.parser(__doc__)
    parser.add_argument("--merged", type=Path, default=Path("models/merged"))
    parser.add_argument("--release", type=Path, default=Path("reports/release"))
    parser.add_argument("--gate", type=Path, default=Path("reports/gate.json"))
    parser.add_argument("--test", type=Path, default=Path("data/split/test.jsonl"))
    parser.add_argument("--report", type=Path, default=Path("reports/promotion.json"))
    args = parser.parse_args(argv)
    return entry.call(run, args.params, _summary, merged_dir=args.merged, release_dir=args.release,
                      gate_path=args.gate, test_file=args.test, report_path=args.report)


def _summary(report: dict) -> None:
    print(f"promote: champion is now {report['registered_model']} v{report['champion']} "
          f"(load it with mlflow.pyfunc.load_model(\"models:/{report['registered_model']}@champion\"))")


if __name__ == "__main__":
    raise SystemExit(main())
