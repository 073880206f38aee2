"""Checkpoint storage: credentials in a URI are never written or printed, and the results folder's
own storage is recognised by its place in the folder (a moved folder resumes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleet_support import tiny_suite

from benchmark.__main__ import main
from benchmark.fleet.storage import DEFAULT_STORAGE, StorageError, open_storage, redact, same_storage, scrub, secrets_of

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(("uri", "redacted"), [
    (f"s3://AKIDEXAMPLE:{SECRET}@bucket/prefix?region=eu-west-1", "s3://***@bucket/prefix?region=eu-west-1"),
    ("s3://AKIDEXAMPLE:wJal%2FK7%2Bb@bucket/p", "s3://***@bucket/p"),
    ("s3://bucket/p?access_key=AKIDEXAMPLE&secret_key=S3CR3TVALUE&session_token=T0KENVALUE&scheme=http",
     "s3://bucket/p?access_key=***&secret_key=***&session_token=***&scheme=http"),
    ("gs://bucket/p?credentials=/home/me/key.json&sig=S1GNATURE", "gs://bucket/p?credentials=***&sig=***"),
    ("hdfs://user:password@namenode:8020/ckpt", "hdfs://***@namenode:8020/ckpt"),
    ("s3://bucket/p?endpoint_override=127.0.0.1:9000&scheme=http", "s3://bucket/p?endpoint_override=127.0.0.1:9000&scheme=http"),
    ("/mnt/shared/me@host/ckpt", "/mnt/shared/me@host/ckpt"),  # a local path has no credentials
])
def test_every_credential_form_is_redacted(uri: str, redacted: str) -> None:
    assert redact(uri) == redacted
    for secret in secrets_of(uri):
        assert secret not in redact(uri)


def test_an_error_about_a_secret_bearing_uri_names_no_secret() -> None:
    uri = f"s3://AKIDEXAMPLE:{SECRET}@bucket/prefix?nonsense=1"
    with pytest.raises(StorageError) as raised:
        open_storage(uri)
    assert "s3://***@bucket/prefix" in str(raised.value)
    assert SECRET not in str(raised.value) and "AKIDEXAMPLE" not in str(raised.value)
    assert scrub(f"cannot open {uri}", secrets_of(uri)) == "cannot open s3://***@bucket/prefix?nonsense=1"


def test_the_local_executor_s_refusal_names_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tiny_suite(tmp_path, models="resnet20", steps=4, every=2)
    storage = f"s3://AKIDEXAMPLE:{SECRET}@bucket/prefix"
    assert main(["run", str(suite), "--executor", "local", "--storage", storage, "--results", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "storage s3://***@bucket/prefix: checkpoint storage is the Ray executor's" in error and SECRET not in error


def test_the_folder_s_own_storage_is_recognised_wherever_the_folder_is() -> None:
    assert same_storage(DEFAULT_STORAGE, DEFAULT_STORAGE)
    # rows written before the default was recorded by its place: the folder's absolute path then
    assert same_storage("/home/me/old-place/results/tiny/_state/ray", DEFAULT_STORAGE)
    assert not same_storage("/mnt/shared/ckpt", DEFAULT_STORAGE)
    assert not same_storage("s3://bucket/a", "s3://bucket/b") and same_storage("s3://***@b/a", "s3://***@b/a")
