"""flows.console.private_prefect_storage: Prefect's local storage never lets other accounts read."""

from __future__ import annotations

import stat
from pathlib import Path

from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from flows.console import private_prefect_storage


def test_prefect_storage_is_created_or_tightened_to_0700(tmp_path: Path) -> None:
    """A missing folder is created 0700; an existing world-readable one is tightened to 0700."""
    fresh, loose = tmp_path / "fresh" / "storage", tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    modes = []
    for folder in (fresh, loose):
        with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: folder}):
            made = private_prefect_storage()
        modes.append((made, stat.S_IMODE(made.stat().st_mode)))
    assert [(fresh, 0o700), (loose, 0o700)] == modes
