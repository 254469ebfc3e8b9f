"""Shared test set-up: a hermetic environment for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test sees real AWS credentials, a real Prefect API, network CRAM references or the user's keystore."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "PREFECT_API_", "GENEGATE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REF_PATH", ":")
    monkeypatch.setenv("REF_CACHE", str(tmp_path_factory.getbasetemp() / "ref-cache"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    yield
