"""A dead, hung or misconfigured object store gives one line (StoreError), after bounded retries."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.storage.store import StoreError

pytest.importorskip("obstore")


@pytest.fixture()
def closed_port(monkeypatch: pytest.MonkeyPatch) -> str:
    """AWS_* pointing at a port on 127.0.0.1 nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
                       "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(key, value)
    return endpoint


@pytest.fixture()
def silent_server(closed_port: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A port that accepts connections and never answers (a hung endpoint)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    try:
        yield endpoint
    finally:
        sock.close()


def test_a_closed_port_is_one_line_naming_the_endpoint(closed_port: str) -> None:
    with pytest.raises(StoreError) as info:
        wl.open_lake("s3://bucket-x/lake")
    message = str(info.value)
    assert "\n" not in message and "s3://bucket-x/lake/_current" in message
    assert f"is the endpoint ({closed_port}, from AWS_ENDPOINT_URL) up and reachable?" in message
    assert "max_retries: 3" in message  # bounded: not obstore's 10 retries over 3 minutes
    result = CliRunner().invoke(main, ["sql", "SELECT 1", "--lake", "s3://bucket-x/lake"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: cannot read 's3://bucket-x/lake/_current'")


def test_writes_to_a_dead_endpoint_fail_the_same_way(closed_port: str, tmp_path) -> None:
    from weightlake.storage.store import resolve_store

    store = resolve_store("s3://bucket-x/lake")
    with pytest.raises(StoreError, match="cannot write 's3://bucket-x/lake/k'.*reachable"):
        store.write("k", b"x")
    with pytest.raises(StoreError, match="cannot write"):
        store.write_if_absent("_log/00000001", b"x")


def test_a_hung_endpoint_times_out(silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTLAKE_S3_TIMEOUT", "0.3")
    monkeypatch.setenv("WEIGHTLAKE_S3_RETRIES", "1")
    monkeypatch.setenv("WEIGHTLAKE_S3_RETRY_TIMEOUT", "1")
    with pytest.raises(StoreError) as info:
        wl.open_lake("s3://bucket-x/lake")
    assert "\n" not in str(info.value) and "max_retries: 1" in str(info.value)


def test_timeout_settings_are_checked(closed_port: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from weightlake.storage.store import _aws_config

    monkeypatch.setenv("WEIGHTLAKE_S3_CONNECT_TIMEOUT", "2.5")
    config = _aws_config()
    assert config["client_options"]["connect_timeout"].total_seconds() == 2.5
    assert config["retry_config"]["max_retries"] == 3 and config["client_options"]["allow_http"] is True
    monkeypatch.setenv("WEIGHTLAKE_S3_RETRIES", "many")
    with pytest.raises(StoreError, match=r"\$WEIGHTLAKE_S3_RETRIES must be a number, got 'many'"):
        wl.open_lake("s3://bucket-x/lake")


@pytest.mark.parametrize(("env", "words"), [
    ({"AWS_ENDPOINT_URL": "127.0.0.1:5077"}, "is no endpoint URL: give its scheme, e.g. http://127.0.0.1:5077"),
    ({"AWS_ALLOW_HTTP": ""}, "is plain http, which the store refuses unless AWS_ALLOW_HTTP=true"),
])
def test_an_endpoint_setting_the_store_cannot_use_is_one_line(closed_port: str, monkeypatch: pytest.MonkeyPatch,
                                                               env: dict[str, str], words: str) -> None:
    """No scheme was a Rust panic and a traceback; http without AWS_ALLOW_HTTP was "builder error"."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["info", "--lake", "s3://bucket-x/lake"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "panic" not in result.output.lower()
    assert result.output.strip().splitlines()[-1].startswith("error: $AWS_ENDPOINT_URL=") and words in result.output
