"""Releases at rest: any small set of files round-trips through store and open; after destroy nothing opens."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import KeyStoreError, LabKeyWrapper, SecretKey, SigningKey
from keys.release_keys import ReleaseKeys
from tests.property.strategies import SEGMENT, payloads
from tests.support.plain_release import write_release
from transfer.at_rest import destroy_release, open_release, store_release
from transfer.log import TransferLog

LAB = SecretKey.generate()
SIGNER = SigningKey.generate()
FAST = settings(max_examples=25, deadline=None)
_SEGMENT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"
_segment = st.text(_SEGMENT_CHARS, min_size=1, max_size=8).filter(lambda s: s[0] not in "-_")
_name = st.lists(_segment, min_size=1, max_size=3).map("/".join)


def _no_file_is_a_folder(names: list[str]) -> bool:
    """No name is also the folder of another (a/b and a/b/c cannot both be files)."""
    folders = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    return not folders & set(names) and "release.json" not in names


file_sets = st.dictionaries(_name, payloads(max_size=2 * SEGMENT + 1), max_size=5).filter(
    lambda files: _no_file_is_a_folder(list(files))
)


@FAST
@given(file_sets)
def test_any_file_set_round_trips_and_is_shredded_by_destroy(files: dict[str, bytes]) -> None:
    """open returns exactly the files stored (names and bytes); once destroyed, the copy never opens."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        keys = ReleaseKeys(root / "ks", LabKeyWrapper(LAB.public_key(), [LAB]))
        log = TransferLog(root / "log.jsonl")
        release = write_release(root / "releases", "R-prop", files)
        stored = store_release(release, root / "stored", keys, log=log, signer=SIGNER)
        expected = {"release.json.c4gh", *(f"{name}.c4gh" for name in files)}
        assert expected == {p.relative_to(stored.directory).as_posix() for p in _files(stored.directory)}
        opened = open_release("R-prop", root / "stored", root / "opened", keys, log=log, signer=SIGNER)
        assert {"release.json", *files} == {
            p.relative_to(opened.directory).as_posix() for p in _files(opened.directory)
        }
        assert files == {name: (opened.directory / name).read_bytes() for name in files}
        destroy_release("R-prop", keys, log=log, signer=SIGNER)
        with pytest.raises(KeyStoreError, match="its key was destroyed"):
            open_release("R-prop", root / "stored", root / "again", keys, log=log, signer=SIGNER)
        assert not (root / "again").exists()
        assert log.verify(SIGNER.verify_key()).ok


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
