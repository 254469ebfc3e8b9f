"""Integration set-up shared by modules: one Prefect test server for the whole session.

The server takes 10-30 s to start, so every flow test module shares it (research/systems.md 3.3):
tests tell their runs apart by flow run id or by the release ids they chose.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_HOME, temporary_settings
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One Prefect test server for the session, with its own PREFECT_HOME; yields that home."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        for name in [n for n in os.environ if n.startswith("PREFECT_API_")]:
            mp.delenv(name)
        with temporary_settings({PREFECT_HOME: home}), prefect_test_harness(server_startup_timeout=120):
            yield home
