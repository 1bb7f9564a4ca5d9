"""A real PostgreSQL for tests: a throwaway cluster of its own on 127.0.0.1 (never the system's cluster), and the
team tracking server of scripts/tracking_server.sh on it.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user Debian's package creates
and its commands run through `runuser`, in a directory under the system temp dir (that user cannot enter
pytest's 0700 tmp dirs). scripts/test.sh installs Debian's `postgresql` when it may; without it the tests skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import SERVER_START_SECONDS, free_port, wait_for_health

REPO = Path(__file__).resolve().parents[1]
# Debian's (and Ubuntu's) place for each installed major version; elsewhere the binaries are on PATH.
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SUPERUSER, USER, DATABASE = "postgres", "surgvqa", "surgvqa_mlflow"


def postgres_bin() -> Path:
    """The directory of the newest installed PostgreSQL's binaries (initdb, pg_ctl, createdb, pg_dump)."""
    found = sorted(DEBIAN_BINARIES.glob("*/bin/initdb"),
                   key=lambda p: tuple(int(n) for n in p.parent.parent.name.split(".")))  # 15, 16, or 9.6
    on_path = shutil.which("initdb")
    if found:
        return found[-1].parent
    if on_path:
        return Path(on_path).parent
    pytest.skip(f"PostgreSQL is not installed (no {DEBIAN_BINARIES}/*/bin/initdb, no initdb on PATH): "
                "scripts/test.sh installs Debian's postgresql with apt when it runs as root or with passwordless "
                "sudo; or `apt-get install postgresql`")


def _as_cluster_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *args] if os.geteuid() == 0 else args


def _check(args: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        pytest.fail(f"{what} failed ({' '.join(args)}):\n{done.stdout}{done.stderr}{server_log}")


@contextlib.contextmanager
def running_postgres(root: Path):
    """A PostgreSQL cluster of its own on 127.0.0.1 (a free port; its unix socket in its own directory) with a
    user `surgvqa` owning the database `surgvqa_mlflow`, as a `with` block yielding its postgresql:// URI. It is
    stopped and deleted after; its log is left at root/postgres.log."""
    bin_dir = postgres_bin()
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL cannot be started as its own user")
    cluster = Path(tempfile.mkdtemp(prefix="surgvqa-pg-"))
    if os.geteuid() == 0:
        shutil.chown(cluster, SUPERUSER, SUPERUSER)
    data, log, port = cluster / "data", cluster / "postgres.log", free_port()
    address = ["-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER]
    try:
        # trust: the cluster answers 127.0.0.1 only, lives for one test and holds nothing but test runs.
        _check(_as_cluster_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                                  "--encoding=UTF8", "--locale=C"]), "initdb")
        # fsync off: a throwaway cluster need not survive a power cut, and tests should not wait for the disk.
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {cluster} -c fsync=off"
        _check(_as_cluster_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
                                  "-t", str(SERVER_START_SECONDS), "start"]), "starting PostgreSQL", log)
        try:
            # A user that owns its database but is no superuser, as on a team's server: MLflow's migrations
            # must work with that.
            _check([str(bin_dir / "createuser"), *address, USER], "createuser")
            _check([str(bin_dir / "createdb"), *address, "--owner", USER, DATABASE], "createdb")
            yield f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _check(_as_cluster_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                   "stopping PostgreSQL", log)
    finally:
        if log.exists():
            shutil.copy(log, root / "postgres.log")
        shutil.rmtree(cluster)


def postgres_rows(pg_uri: str, sql: str, params: tuple | dict = ()) -> list[dict]:
    """The rows of one query on the database at pg_uri, each a {column: value} dict: what MLflow wrote, read
    straight from its tables (runs, tags, metrics, registered_model_aliases, model_version_tags)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(pg_uri, row_factory=dict_row) as connection:
        return connection.execute(sql, params).fetchall()


@contextlib.contextmanager
def running_postgres_mlflow_server(root: Path):
    """scripts/tracking_server.sh's server on 127.0.0.1 (a free port, one worker) over a running_postgres
    database, its artifacts under root/artifacts and its output in root/tracking_server.log, as a `with` block
    yielding (tracking URL, postgres URI); stopped after."""
    with running_postgres(root) as pg_uri:
        port, log = free_port(), root / "tracking_server.log"
        with log.open("w") as output:
            server = subprocess.Popen(["bash", str(REPO / "scripts" / "tracking_server.sh"), "--backend-store-uri",
                                       pg_uri, "--artifacts-destination", str(root / "artifacts"), "--port",
                                       str(port), "--workers", "1"], stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, server, log, "/health", "the tracking server")
            yield url, pg_uri
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture
def postgres_mlflow_server(tmp_path):
    """(tracking URL, postgres URI) of scripts/tracking_server.sh's server on a real PostgreSQL over tmp_path
    (see running_postgres_mlflow_server)."""
    with running_postgres_mlflow_server(tmp_path) as server:
        yield server
