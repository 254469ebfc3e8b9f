"""Shared test set-up: a hermetic environment for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees real AWS credentials, a real Prefect API, network CRAM references or the user's keystore."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PREFECT_API_", "GENEGATE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REF_PATH", ":")
    monkeypatch.setenv("REF_CACHE", str(tmp_path_factory.getbasetemp() / "ref-cache"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3/KMS protocol server (moto's server mode) on loopback, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for the loopback server only (the autouse fixture removed any real ones)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
