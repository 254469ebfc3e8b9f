"""Test support: a release directory from given bytes, listed in release.json as `genegate deid` lists files.

For the tests of releases at rest, which need releases of chosen shapes (nested names, empty
files, sizes on segment boundaries) faster than a synthetic cohort can make them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from deid.release import release_digest


def write_release(root: Path, release_id: str, contents: Mapping[str, bytes]) -> Path:
    """root/<release_id>/ holding contents (release-relative name -> bytes) and its release.json."""
    release = root / release_id
    for name, data in contents.items():
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_bytes(data)
    files = [
        {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in sorted(contents.items())
    ]
    release.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": 1,
        "release_id": release_id,
        "class": "pseudonymised",
        "files": files,
        "release_sha256": release_digest(files),
    }
    (release / "release.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return release
