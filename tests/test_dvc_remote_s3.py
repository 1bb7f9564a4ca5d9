"""An S3 DVC remote (dvc-s3, the `s3` extra) against a real S3-compatible server, moto's `moto_server` on
127.0.0.1: the project's data goes up with `dvc push`, and a fresh clone gets it back with `surgvqa data ensure`
(`dvc pull data.dvc`) byte for byte. What moto cannot show is not tested here: real AWS credentials (profiles,
instance roles), IAM policies, regions other than the default."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.scratch import BIN, file_hashes, git_commit, scratch_git_project, sh
from tests.servers import free_port, wait_for_health

pytest.importorskip("moto", reason="moto[server]==5.2.5 (the dev extra) is not installed: no S3 server to test on")

BUCKET = "surgvqa-dvc"
# moto takes any key pair. Only the subprocesses get it, in the variables DVC's S3 client reads (a CI secret's
# route); nothing is written to the DVC config.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto-key", "AWS_SECRET_ACCESS_KEY": "moto-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
DVC = [sys.executable, "-m", "dvc"]


def _s3_client(url: str):
    """boto3's S3 client for the server at `url`, with the test's key pair."""
    import boto3

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        region_name=CREDENTIALS["AWS_DEFAULT_REGION"])


@pytest.fixture
def s3_endpoint(tmp_path):
    """A real `moto_server` on a free port of 127.0.0.1 (its working files in tmp_path), with the bucket made;
    yields its URL and stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "moto.log").open("w") as log:
        server = subprocess.Popen([str(Path(BIN) / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_health(url, server, tmp_path / "moto.log", "/moto-api/", "moto_server")
            _s3_client(url).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_data_pushed_to_an_s3_remote_is_pulled_into_a_fresh_clone(tmp_path, repo, s3_endpoint):
    project = scratch_git_project(tmp_path / "project", repo)
    sh(["surgvqa", "profile", "use", "test"], project)
    assert "generating the embedded sample" in sh(["surgvqa", "data", "ensure"], project)
    sh([*DVC, "commit", "-f", "-q", "data.dvc"], project)  # the generated sample into the cache, to push it
    # The team's remote lives in the committed config; the endpoint is moto's (for AWS itself, leave it out).
    sh([*DVC, "remote", "add", "-d", "storage", f"s3://{BUCKET}/surgvqa"], project)
    sh([*DVC, "remote", "modify", "storage", "endpointurl", s3_endpoint], project)
    git_commit(project, "the test profile, and the S3 remote")
    files = file_hashes(project / "data" / "raw")
    assert f"{len(files) + 1} files pushed" in sh([*DVC, "push", "data.dvc"], project, CREDENTIALS)  # and the .dir

    keys = {o["Key"] for o in _s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="surgvqa/")["Contents"]}
    recorded = next(line.split()[-1] for line in (project / "data.dvc").read_text().splitlines() if "md5:" in line)
    assert f"surgvqa/files/md5/{recorded[:2]}/{recorded[2:]}" in keys  # the .dir listing, under its md5
    assert len(keys) == len(files) + 1  # and every file of data/raw

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data" / "raw").exists() and not (clone / ".dvc" / "cache").exists()
    assert "pulling it from DVC remote storage" in sh(["surgvqa", "data", "ensure"], clone, CREDENTIALS)
    assert file_hashes(clone / "data" / "raw") == files
    assert "Data and pipelines are up to date" in sh([*DVC, "status", "data.dvc"], clone)
