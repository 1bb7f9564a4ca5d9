"""The `surgvqa` command: every pipeline stage by name (the same `main` dvc.yaml runs with `python -m`), the
data helpers, the params check and the sanity check.

Imports are lazy: peft, Great Expectations and MLflow each take seconds to import, and `surgvqa --help` or a
data stage should not pay for them. dvc.yaml does not run this module, so adding a command here reruns nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from surgvqa.errors import SurgvqaError

# Where the pipeline leaves the gate report, the merged candidate and the test split it gated on: what
# check-gate, repro and summary read.
GATED_CANDIDATE = {"gate": "reports/gate.json", "merged": "models/merged", "test": "data/split/test.jsonl"}

# `surgvqa <command>` -> the module whose main() runs it; dvc.yaml's stages run the same modules.
STAGE_COMMANDS = {
    "ingest": "surgvqa.data.ingest",
    "categorize": "surgvqa.data.categorize",
    "convert": "surgvqa.data.convert",
    "split": "surgvqa.data.split",
    "validate": "surgvqa.data.validate",
    "base": "surgvqa.model.base",
    "train": "surgvqa.train.train",
    "verify-adapter": "surgvqa.train.verify",
    "evaluate": "surgvqa.evaluate.evaluate",
    "compare": "surgvqa.evaluate.compare",
    "merge": "surgvqa.release.merge",
    "evaluate-merged": "surgvqa.release.evaluate_merged",
    "gate": "surgvqa.release.gate",
    "sanity-overfit": "surgvqa.train.sanity",
    "promote": "surgvqa.release.promote",  # registry commands, after `dvc repro` (they change shared state)
    "rollback": "surgvqa.release.rollback",
}


def _cmd_sample(args) -> None:
    from surgvqa.data.raw import RAW_DIR
    from surgvqa.data.sample import run
    from surgvqa.params.typed import load_sections

    out = Path(args.out or RAW_DIR)
    info = run(out, args.images, args.seed, **load_sections(args.params, run))
    print(f"sample: {info['images']} images, {info['rows']} QA rows (seed {info['seed']}) -> {out}")


def _cmd_import(args) -> None:
    from surgvqa.data.importer import import_dataset
    from surgvqa.data.raw import RAW_DIR
    from surgvqa.params.typed import load_sections

    # The import applies ingest's limit (ingest.max_bad_fraction) to every source row it could not place.
    report = import_dataset(Path(args.source), Path(args.to or RAW_DIR), Path(args.images) if args.images else None,
                            **load_sections(args.params, import_dataset))
    skipped = {k: n for k, n in report["skipped_by_reason"].items() if n}
    print(f"import: {report['rows_written']} of {report['rows_read']} rows, {report['images_written']} images; "
          f"skipped {report['skipped_rows']} rows {skipped or ''} (details: {report['skipped_file']}); ingest will "
          f"quarantine {report['ingest_quarantined_rows']} more {report['ingest_quarantined_by_reason'] or ''}")


def _dvc_default_remote() -> str | None:
    """The DVC remote `dvc pull` and `dvc repro --pull` use, or None when no remote is configured."""
    try:
        listed = subprocess.run(["dvc", "remote", "list"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SurgvqaError(f"could not ask DVC for its remotes ({e}); is dvc installed and is this a DVC repo?"
                           ) from None
    if not listed.strip():
        return None
    # `dvc remote default` prints the name alone (`remote list` wraps its table at 80 columns in a pipe).
    default = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True)
    if default.returncode != 0:  # "No default remote set": `dvc pull` would fail with "no remote specified"
        raise SurgvqaError("DVC remotes are configured (`dvc remote list`) but none is the default: `dvc remote "
                           "default NAME` makes one the remote to pull from")
    return default.stdout.strip()


def _check_raw_is_recorded(raw_dir: Path) -> None:
    """Fail when data/raw is not the data data.dvc records (after a profile switch, say): the pipeline would
    otherwise run on other data than the profile's."""
    if not Path("data.dvc").is_file():
        return  # nothing recorded yet: the first `dvc add data/raw` records it
    # `dvc data status` compares the workspace with data.dvc (`dvc status` would only say "not in cache" for a
    # sample that was generated, never cached, whichever bytes it holds).
    done = subprocess.run(["dvc", "data", "status", "--json", str(raw_dir)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SurgvqaError(f"`dvc data status {raw_dir}` failed: {done.stderr.strip() or done.stdout.strip()}")
    uncommitted = json.loads(done.stdout[done.stdout.index("{"):]).get("uncommitted", {})
    if any(paths for paths in uncommitted.values()):
        raise SurgvqaError(f"{raw_dir} is not the data data.dvc records (a profile switch, or an import not yet "
                           "recorded): `dvc checkout data.dvc` (or `dvc pull data.dvc`) fetches the recorded data; "
                           f"for a generated sample, remove {raw_dir} and run `surgvqa data ensure`; "
                           "`dvc commit -f data.dvc` records what is there instead")


def _cmd_summary(args) -> None:
    from surgvqa.profile import active
    from surgvqa.release.gate import fresh_report, table

    compare, gate = Path(args.reports) / "compare.md", Path(args.reports) / "gate.json"
    print(f"## surgvqa validation: profile {active(args.params) or '(params.yaml names none)'}\n")
    try:  # reports/ is committed: after a run that stopped early, gate.json is another run's
        report, _ = fresh_report(gate, Path(args.merged), Path(args.test))
    except SurgvqaError as e:
        print(f"### Release gate: no report of this run's candidate ({e})\n")
        raise SurgvqaError(f"the summary has no gate report of this run: {e}") from None
    candidate = report["candidate"]
    print(f"### Release gate: {'PASSED' if report['passed'] else 'FAILED'} for merged {candidate.get('approach')} "
          f"{str(candidate.get('merged_sha256'))[:12]}\n\n```\n{table(report)}\n```\n")
    if not compare.is_file():
        raise SurgvqaError(f"the summary is incomplete: {compare} is missing")
    print(compare.read_text())


def _cmd_ensure(args) -> None:
    from surgvqa.data.raw import METADATA, RAW_DIR

    if (RAW_DIR / METADATA).is_file():
        _check_raw_is_recorded(RAW_DIR)
        print(f"data: {RAW_DIR} is present and is the data data.dvc records")
        return
    if RAW_DIR.exists() and any(RAW_DIR.iterdir()):
        raise SurgvqaError(f"{RAW_DIR} exists but has no {METADATA}: remove it, or fill it with "
                           "`surgvqa data import --from PATH`")
    remote = _dvc_default_remote()
    if remote:
        print(f"data: {RAW_DIR} is missing; pulling it from DVC remote {remote}", flush=True)
        if subprocess.run(["dvc", "pull", "data.dvc"]).returncode != 0:
            raise SurgvqaError(f"`dvc pull data.dvc` from remote {remote} failed (see above): check the "
                               "remote's credentials and that the data was pushed (`dvc push data.dvc`)")
        return
    print(f"data: {RAW_DIR} is missing and no DVC remote is configured; generating the embedded sample")
    _cmd_sample(argparse.Namespace(images=None, seed=None, out=None, params=args.params))
    try:  # a profile whose data.dvc records imported data (gpu) must never run on the sample instead
        _check_raw_is_recorded(RAW_DIR)
    except SurgvqaError:
        shutil.rmtree(RAW_DIR)  # made just now, by this command: nothing of the user's is lost
        raise SurgvqaError("data.dvc records data that `surgvqa data sample` does not make (imported data, the "
                           "gpu profile's say): configure the DVC remote that holds it (`dvc remote add -d NAME "
                           "URL`, or DVC_REMOTE_URL for scripts/validate.sh) and run again") from None


def _cmd_check_gate(args) -> None:
    from surgvqa.release.gate import table, verdict

    report = verdict(Path(args.gate), Path(args.merged), Path(args.test))
    print(table(report))
    print(f"gate PASSED for candidate {report['candidate']['merged_sha256'][:12]}: `surgvqa promote` may register it")


def _cmd_profile_list(args) -> None:
    from surgvqa import profile

    current = profile.active(args.params)
    for name in profile.names():
        print(f"{'*' if name == current else ' '} {name}")


def _cmd_profile_use(args) -> None:
    from surgvqa import profile

    changed = profile.use(args.name)
    print(f"profile: {args.name} is active ({len(changed)} values changed"
          f"{': ' + ', '.join(changed) if changed else ''}); `dvc params diff` shows them, `dvc repro` reruns "
          "what they touch")
    if profile.DATA_FILE in changed:
        print("profile: data.dvc now records this profile's raw data: `surgvqa data ensure` checks data/raw "
              "against it and `dvc checkout data.dvc` (or `dvc pull data.dvc`) fetches it")


def _cmd_profile_check(args) -> None:
    from surgvqa import profile

    print(f"profile: params.yaml and data.dvc are exactly profile {profile.check()}")


def _pull_from_remote(dvc_args: list[str], remote: str | None) -> list[str]:
    """`dvc repro`'s arguments, with --pull when a DVC remote is configured: what the remote already holds is
    fetched instead of made again (a fresh clone regenerates nothing and trains nothing)."""
    if remote is None:
        return list(dvc_args)
    # `dvc repro --pull` first fetches the remote's run cache; then a stage unchanged but for missing outputs
    # (a fresh clone: dvc.lock matches, models/ and data/ are absent) has them pulled, and a stage whose exact
    # deps, params and command were run before (another commit's) is restored from the run cache; any other
    # stage runs. Without --pull both kinds would run.
    print(f"repro: DVC remote {remote} is configured: `dvc repro --pull` fetches the outputs of unchanged stages "
          "and of stages in its run cache instead of running them", flush=True)  # before dvc's own output
    return list(dvc_args) if "--pull" in dvc_args else ["--pull", *dvc_args]


def _cmd_repro(args) -> None:
    """The main job without the install step (scripts/repro.sh installs, then runs this)."""
    from surgvqa import profile

    if args.profile not in (None, profile.ACTIVE):
        _cmd_profile_use(argparse.Namespace(name=args.profile))
    _cmd_params_check(args)  # every section at once, before any stage runs
    _cmd_ensure(args)
    # Under `mlflow run` the project's run id is in MLFLOW_RUN_ID, and mlflow.start_run() would try to resume
    # that run (in another store, perhaps) for every stage: each stage logs its own run instead.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}
    dvc_args = _pull_from_remote(args.dvc_args, _dvc_default_remote())
    if subprocess.run(["dvc", "repro", *dvc_args], env=env).returncode != 0:
        raise SurgvqaError(f"`dvc repro {' '.join(dvc_args)}` failed (the failing stage says why above; with "
                           "--pull, an unreachable remote or missing credentials too)")
    # A failed gate never passes for a pass: after a whole run the job fails here, naming the failed checks (a
    # missing or stale reports/gate.json fails too). A partial run (a stage name) has no release to judge;
    # options alone (--force, --pull) still run the whole pipeline.
    if all(arg.startswith("-") for arg in args.dvc_args):
        _cmd_check_gate(argparse.Namespace(**GATED_CANDIDATE))


def _cmd_params_check(args) -> None:
    from surgvqa.params.schema import load_params

    params = load_params(args.params)
    print(f"params: {args.params} is complete and valid ({len(vars(params))} sections)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="surgvqa", description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make, import or fetch the raw Kvasir-VQA layout").add_subparsers(
        dest="data_command", required=True)
    s = data.add_parser("sample", help="generate the grounded synthetic sample (the embedded default)")
    s.add_argument("--images", type=int, help="number of images (default: sample.images)")
    s.add_argument("--seed", type=int, help="seed (default: sample.seed)")
    s.add_argument("--out", help="output folder (default: data/raw)")
    s.set_defaults(func=_cmd_sample)
    s = data.add_parser("import", help="convert a local copy of Kvasir-VQA (HF parquet, or CSV + images)")
    s.add_argument("--from", dest="source", required=True, help="parquet file or folder, or metadata CSV")
    s.add_argument("--images", help="image folder for a CSV input (default: images/ beside the CSV)")
    s.add_argument("--to", help="output folder (default: data/raw)")
    s.set_defaults(func=_cmd_import)
    s = data.add_parser("ensure", help="make sure the raw data exists: pull it from a DVC remote, else generate "
                        "the sample")
    s.set_defaults(func=_cmd_ensure)
    s = sub.add_parser("check-gate", help="exit non-zero unless reports/gate.json passed for the candidate on disk")
    s.add_argument("--gate", default=GATED_CANDIDATE["gate"])
    s.add_argument("--merged", default=GATED_CANDIDATE["merged"])
    s.add_argument("--test", default=GATED_CANDIDATE["test"])
    s.set_defaults(func=_cmd_check_gate)
    s = sub.add_parser("repro", help="the main job: params check, raw data, `dvc repro`, and after a whole run "
                       "the gate (scripts/repro.sh installs first, then runs this)")
    s.add_argument("--profile", help="make this profile active first (`active`, the default: keep the active one)")
    s.add_argument("dvc_args", nargs=argparse.REMAINDER, help="passed to `dvc repro` (a stage name, --force, ...)")
    s.set_defaults(func=_cmd_repro)
    s = sub.add_parser("summary", help="the gate report and the comparison table as Markdown (a CI job summary)")
    s.add_argument("--reports", default="reports")
    s.add_argument("--merged", default=GATED_CANDIDATE["merged"], help="the candidate the gate report must be of")
    s.add_argument("--test", default=GATED_CANDIDATE["test"], help="the test split it must have gated on")
    s.set_defaults(func=_cmd_summary)
    s = sub.add_parser("params", help="check params.yaml").add_subparsers(dest="params_command", required=True)
    s.add_parser("check", help="load every section: a missing, unknown or invalid key is an error").set_defaults(
        func=_cmd_params_check)
    s = sub.add_parser("profile", help="named sets of params and data (profiles/): list, switch, check"
                       ).add_subparsers(dest="profile_command", required=True)
    s.add_parser("list", help="the profiles; * marks the active one").set_defaults(func=_cmd_profile_list)
    u = s.add_parser("use", help="make a profile active: writes params.yaml and data.dvc (DVC tracks both)")
    u.add_argument("name")
    u.set_defaults(func=_cmd_profile_use)
    s.add_parser("check", help="fail unless params.yaml and data.dvc are exactly their profile's").set_defaults(
        func=_cmd_profile_check)
    for name, module in STAGE_COMMANDS.items():  # listed for --help; main() hands their arguments on untouched
        sub.add_parser(name, add_help=False, help=f"the `{module}` stage (`surgvqa {name} --help`)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `surgvqa [--params P] <command> ARGS...`: the command is the first word after the global options, and a
    # stage command's ARGS all belong to its module.
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1 if "=" in argv[i] or argv[i] in ("-h", "--help") else 2
    top, rest = (argv[: i + 1], argv[i + 1:]) if i < len(argv) and argv[i] in STAGE_COMMANDS else (argv, [])
    parser = build_parser()
    args, unknown = parser.parse_known_args(top)
    if unknown and args.command != "repro":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:  # `surgvqa repro --force`: dvc repro's own options
        args.dvc_args = [*unknown, *args.dvc_args]
    if args.command in STAGE_COMMANDS:
        return importlib.import_module(STAGE_COMMANDS[args.command]).main(["--params", str(args.params), *rest])
    try:
        args.func(args)
    except SurgvqaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
