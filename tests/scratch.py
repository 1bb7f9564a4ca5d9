"""Scratch copies of the project for end-to-end tests, and running the project's commands there."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from surgvqa.params.tracking import URI_VARIABLE

BIN = str(Path(sys.executable).parent)  # where `surgvqa` and `dvc` are installed


# What a command started here must not inherit: what the MLflow fluent API writes into this process's
# environment (mlflow.set_tracking_uri, set_experiment, start_run: earlier tests' values), and a developer's
# SURGVQA_TRACKING_URI, which would send a scratch project's runs to their server. A test that wants one passes
# it in `env`.
SCRATCH_LEAKS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                 "MLFLOW_RUN_ID", URI_VARIABLE)


def run(args, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command in a scratch project with this environment's tools first on PATH, plus `env`."""
    inherited = {k: v for k, v in os.environ.items() if k not in SCRATCH_LEAKS}
    env = {**inherited, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), **(env or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def sh(args, cwd, env: dict | None = None) -> str:
    done = run(args, cwd, env)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _copy_project(where: Path, repo: Path) -> None:
    """The project's pipeline, params, profiles, scripts and code, copied from the working tree into `where`."""
    where.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "data.dvc", ".dvcignore", "params.yaml", "pyproject.toml", "MLproject",
                 "python_env.yaml"):
        shutil.copy(repo / name, where / name)
    for name in ("src", "profiles", "scripts"):
        shutil.copytree(repo / name, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))


def scratch_project(where: Path, repo: Path) -> Path:
    """A copy of the project (pipeline, params, profiles, scripts, code) initialised as a DVC repo without git."""
    _copy_project(where, repo)
    sh([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], where)
    sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], where)
    return where


def scratch_git_project(where: Path, repo: Path) -> Path:
    """scratch_project's copy, with the project's .gitignore, as a git repository with DVC in it, committed:
    what `git clone` of it gives is the project as a user has it (no data, no models, no DVC cache)."""
    _copy_project(where, repo)
    shutil.copy(repo / ".gitignore", where / ".gitignore")
    sh(["git", "init", "-q"], where)
    sh([sys.executable, "-m", "dvc", "init", "-q"], where)
    sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], where)
    git_commit(where, "the project")
    return where


def git_commit(where: Path, message: str) -> None:
    """Commit everything git does not ignore in a scratch repository (under a test identity: a machine may have
    none configured)."""
    sh(["git", "add", "-A"], where)
    sh(["git", "-c", "user.name=surgvqa tests", "-c", "user.email=tests@127.0.0.1", "-c", "commit.gpgsign=false",
        "commit", "-q", "-m", message], where)


def share_environment(where: Path) -> None:
    """Give the scratch copy this test run's installed environment as its .venv, marked up to date, so the
    project's scripts (scripts/setup.sh) use it instead of installing a second one."""
    venv = where / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(BIN, target_is_directory=True)
    (venv / ".surgvqa-installed").write_text(hashlib.sha256((where / "pyproject.toml").read_bytes()).hexdigest()
                                             + "\n")


def file_hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path) -> the sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def edited(path: Path, old: str, new: str):
    """Replace `old` (which must occur) by `new` in a file for the duration of the block."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
    try:
        yield
    finally:
        path.write_text(text)


def changed_stages(cwd: Path) -> dict:
    """Stages whose recorded deps or params changed, as `dvc status` reports them."""
    out = sh([sys.executable, "-m", "dvc", "status", "--json"], cwd)
    status = json.loads(out[out.index("{"):])
    return {name: changes for name, changes in status.items() if any("changed deps" in c for c in changes
                                                                         if isinstance(c, dict))}
