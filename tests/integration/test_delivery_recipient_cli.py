"""The recipient's side: a file:// delivery decrypts with the reference `crypt4gh` CLI (1.8.6).

The recipient holds only their secret key file and the outbox; every delivered `.c4gh` must
decrypt with `crypt4gh decrypt --sk recipient.sec` to the release file, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keys import Keystore, Passphrase, SecretKey, encode_secret_key
from tests.support.releases import RELEASE_NAME, add_file, assessed_summary_release, register_partner
from transfer import SendOutcome, TransferLog, send_release
from transfer.delivery import MANIFEST_NAME, read_manifest
from transfer.envelope import encrypt_file
from transfer.facts import TRANSFER_LOG

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()
CRYPT4GH = Path(sys.executable).parent / "crypt4gh"
SEGMENT = 65536


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with an assessed summary release plus a multi-segment file (built once per module)."""
    root = tmp_path_factory.mktemp("template")
    store = assessed_summary_release(root, PASS)
    release = root / "releases" / RELEASE_NAME
    # three whole segments and a partial one, so segment boundaries are crossed
    add_file(release, store.home, "tables/counts.tsv", os.urandom(3 * SEGMENT + 777))
    return root


def crypt4gh_decrypt(secret_key: Path, encrypted: Path, passphrase: str) -> bytes:
    """`crypt4gh decrypt --sk KEY < FILE`, detached from any terminal; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C4GH_")}
    env["C4GH_PASSPHRASE"] = passphrase
    done = subprocess.run(
        [str(CRYPT4GH), "decrypt", "--sk", str(secret_key)],
        input=encrypted.read_bytes(),
        capture_output=True,
        env=env,
        check=False,
        start_new_session=True,
        timeout=120,
    )
    assert (0, encrypted.name) == (done.returncode, encrypted.name), done.stderr.decode(errors="replace")
    return done.stdout


def test_every_delivered_file_decrypts_with_the_reference_cli_to_the_release_bytes(
    template: Path, tmp_path: Path
) -> None:
    """Deliver to a file:// outbox; the recipient's `crypt4gh decrypt` gives back each release file exactly."""
    shutil.copytree(template / "ks", tmp_path / "ks")
    release = tmp_path / "release"
    shutil.copytree(template / "releases" / "the-release", release)
    store = Keystore(tmp_path / "ks")
    outbox = tmp_path / "outbox" / "ch-zurich"
    key = register_partner(store, PASS, "ch-zurich", "CH", "eu-central-2", outbox.as_uri(), today=TODAY)
    recipient_key = tmp_path / "recipient.sec"  # what the recipient holds: their key, scrypt-protected
    recipient_key.write_bytes(encode_secret_key(key, PASS.reveal()))

    result = send_release(
        store,
        release,
        "ch-zurich",
        PASS,
        TODAY,
        wrapper=store.vault_wrapper(PASS),
        log=TransferLog(store.home / TRANSFER_LOG),
    )

    doc = json.loads((release / "release.json").read_text())
    delivered = outbox / doc["release_id"]
    names = sorted(["release.json", *(f["name"] for f in doc["files"])])
    found = sorted(p.relative_to(delivered).as_posix() for p in delivered.rglob("*.c4gh"))
    assert SendOutcome.DELIVERED == result.outcome
    assert [f"{n}.c4gh" for n in names] == found
    assert "tables/counts.tsv" in names
    for name in names:
        plaintext = crypt4gh_decrypt(recipient_key, delivered / f"{name}.c4gh", PASS.reveal())
        assert (name, (release / name).read_bytes()) == (name, plaintext)
    manifest = read_manifest((delivered / MANIFEST_NAME).read_bytes(), store.verify_key(), "test")
    assert sorted(f"{n}.c4gh" for n in names) == sorted(e.name for e in manifest.files)


def test_the_reference_cli_refuses_a_file_for_another_key(tmp_path: Path) -> None:
    """The check above can fail: a different recipient key makes `crypt4gh decrypt` exit non-zero."""
    encrypted = tmp_path / "x.c4gh"
    intended = SecretKey.generate()
    plain = tmp_path / "x.txt"
    plain.write_bytes(b"release bytes" * 1000)
    encrypt_file(plain, encrypted, [intended.public_key()])
    other = tmp_path / "other.sec"
    other.write_bytes(encode_secret_key(SecretKey.generate(), PASS.reveal()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("C4GH_")}
    env["C4GH_PASSPHRASE"] = PASS.reveal()
    done = subprocess.run(
        [str(CRYPT4GH), "decrypt", "--sk", str(other)],
        input=encrypted.read_bytes(),
        capture_output=True,
        env=env,
        check=False,
        start_new_session=True,
        timeout=120,
    )
    assert (1, b"") == (min(done.returncode, 1), done.stdout)
    mine = tmp_path / "mine.sec"
    mine.write_bytes(encode_secret_key(intended, PASS.reveal()))
    assert plain.read_bytes() == crypt4gh_decrypt(mine, encrypted, PASS.reveal())
