"""One transfer of a release to a recipient at a time, across processes of this keystore.

Planning a transfer aborts the release's unfinished uploads at the destination and withdraws its
published manifest, so two concurrent sends of the same release to the same recipient (a manual
`genegate transfer` while the scheduled partner-sync runs) would undo each other's work. The
sender holds an exclusive lock for the whole send, from the gate to the signed manifest:
`<home>/locks/<digest>.lock`, where the digest covers the recipient id and the release folder's
resolved path (nothing readable: neither names the subject, but the file name stays opaque). A
second sender fails at once with TransferBusy instead of waiting for a transfer that may take
hours. The lock is flock(2): the kernel releases it when its process ends, so a crash never
leaves a stale lock; it holds across processes sharing the keystore's filesystem, not across
hosts that mount the keystore over a network filesystem without working locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from transfer.errors import TransferBusy

LOCKS = "locks"


@contextlib.contextmanager
def sending(home: Path, release: Path, recipient_id: str) -> Iterator[None]:
    """Hold the send lock of (release, recipient) for the block; TransferBusy if another holds it."""
    folder = home / LOCKS
    folder.mkdir(mode=0o700, exist_ok=True)
    key = hashlib.sha256(f"{recipient_id}\0{release.resolve()}".encode()).hexdigest()[:32]
    fd = os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TransferBusy(
                release.name,
                f"another genegate is sending this release to {recipient_id} now; wait for it to end "
                "(or stop it), then run the transfer again",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
