"""Crypto-shredding, end to end through the CLI (issue #9): `genegate release store | open | destroy`.

Done means: after `release destroy`, the stored ciphertext, and a copy of it taken before (the
"backup"), opens neither with genegate nor with the reference `crypt4gh` CLI (1.8.6), with the
lab's own key or with any key genegate still holds; before it, the stored copy is ordinary
Crypt4GH that the reference CLI decrypts given the release key. The release is a real one:
synthetic cohort -> `deid` (cgipa), with a bgzipped VCF that htslib reads after the round trip.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pysam
import pytest

from deid.policy import load_policy
from deid.release import deidentify
from deid.synth import CohortSpec, synthesize_cohort
from flows.cli import run
from keys import Keystore, Passphrase, SecretKey, Vault, encode_secret_key
from keys.release_keys import ReleaseKeys
from tests.support.plain_release import write_release
from transfer.log import TransferLog

PASS = Passphrase("correct horse battery")
RELEASE_ID = "rel-shred"
CRYPT4GH = Path(sys.executable).parent / "crypt4gh"
TODAY = dt.datetime.now(dt.UTC).date().isoformat()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/ks (a keystore) and root/releases/rel-shred (a genomic cgipa release), built once per module."""
    root = tmp_path_factory.mktemp("shred")
    synthesize_cohort(CohortSpec(out=root / "cohort", samples=12, seed=11, reads=False))
    store = Keystore.init(root / "ks", PASS)
    deidentify(
        root / "cohort" / "manifest.csv",
        load_policy("cgipa"),
        root / "releases",
        Vault(store.home, "default", store.vault_wrapper(PASS)),
        release_id=RELEASE_ID,
        ledger=store.home / "ledger",
    )
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of keystore and release; the CLI finds them through GENEGATE_HOME/PASSPHRASE."""
    shutil.copytree(template / "ks", tmp_path / "ks")
    shutil.copytree(template / "releases" / RELEASE_ID, tmp_path / "release")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS.reveal())
    return tmp_path


def reference_decrypt(secret_key: Path, encrypted: Path) -> tuple[int, bytes]:
    """`crypt4gh decrypt --sk KEY < FILE` (the reference CLI), detached from any terminal: (exit code, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C4GH_")}
    env["C4GH_PASSPHRASE"] = PASS.reveal()
    done = subprocess.run(
        [str(CRYPT4GH), "decrypt", "--sk", str(secret_key)],
        input=encrypted.read_bytes(),
        capture_output=True,
        env=env,
        check=False,
        start_new_session=True,
        timeout=120,
    )
    return done.returncode, done.stdout


def _key_file(key: SecretKey, path: Path) -> Path:
    path.write_bytes(encode_secret_key(key, PASS.reveal()))
    return path


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _table(home: Path) -> ReleaseKeys:
    return ReleaseKeys(home, Keystore(home).vault_wrapper(PASS))


def test_destroy_leaves_ciphertext_that_neither_genegate_nor_crypt4gh_opens(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """store -> reference decrypt with the release key -> open -> destroy -> nothing opens any copy, any key."""
    home, release, stored = lab / "ks", lab / "release", lab / "stored"
    names = _tree(release)
    assert any(n.endswith(".vcf.gz") for n in names)

    # store: only Crypt4GH files, one per release file, nothing left in the temporary directory
    assert 0 == run(["release", "store", str(release), "--to", str(stored)])
    assert f"{stored / RELEASE_ID}\n" == capsys.readouterr().out
    copy = stored / RELEASE_ID
    assert [f"{n}.c4gh" for n in names] == _tree(copy)
    assert [] == os.listdir(lab / "tmp")

    # the stored copy is ordinary Crypt4GH: the reference CLI opens it with the release key
    release_key = _table(home).secret_key(RELEASE_ID)
    exported = _key_file(release_key, lab / "release-key.sec")
    for name in names:
        assert (0, (release / name).read_bytes()) == reference_decrypt(exported, copy / f"{name}.c4gh")
    exported.unlink()  # from here on, only genegate's table holds the release key

    # a backup of the stored copy, and a second release stored with the same keystore
    backup = shutil.copytree(copy, lab / "backup" / RELEASE_ID)
    other = write_release(lab / "releases", "rel-other", {"counts.tsv": b"site\tcount\n"})
    assert 0 == run(["release", "store", str(other), "--to", str(stored)])

    # open restores the release byte for byte; htslib reads the VCF
    assert 0 == run(["release", "open", RELEASE_ID, "--from", str(stored), "--out", str(lab / "restored")])
    restored = lab / "restored" / RELEASE_ID
    assert [(release / n).read_bytes() for n in names] == [(restored / n).read_bytes() for n in names]
    vcf = next(n for n in names if n.endswith(".vcf.gz"))
    with pysam.VariantFile(str(restored / vcf)) as fin, pysam.VariantFile(str(release / vcf)) as ref:
        assert [str(r) for r in ref] == [str(r) for r in fin]
    capsys.readouterr()

    # destroy, then destroy again
    assert 0 == run(["release", "destroy", RELEASE_ID, "--yes"])
    out, err = capsys.readouterr()
    assert f"destroyed on {TODAY}" in out
    assert "reminder: keystore backups taken before this destroy still hold the release key" in err
    assert 0 == run(["release", "destroy", RELEASE_ID, "--yes"])
    assert f"release {RELEASE_ID}: already destroyed on {TODAY}; nothing to do\n" == capsys.readouterr().out

    # genegate cannot open the stored copy nor the backup: one line, exit 2, nothing written
    for source in (stored, backup.parent):
        assert 2 == run(["release", "open", RELEASE_ID, "--from", str(source), "--out", str(lab / "again")])
        lines = capsys.readouterr().err.splitlines()
        assert [f"genegate: error: release {RELEASE_ID}: its key was destroyed on {TODAY}"] == [
            line.split(" (`genegate")[0] for line in lines
        ]
        assert not (lab / "again").exists()

    # every X25519 secret genegate still holds: the lab keys and the other release's key
    store = Keystore(home)
    held = [*store.lab_secret_keys(PASS), _table(home).secret_key("rel-other")]
    lab_file = home / f"{store.config().current.file}.sec"  # the keystore's own file, as it is
    key_files = [lab_file, *(_key_file(k, lab / f"held-{n}.sec") for n, k in enumerate(held))]
    for source in (copy, backup):
        for name in _tree(source):
            for key_file in key_files:
                code, plain = reference_decrypt(key_file, source / name)
                assert (True, b"") == (code != 0, plain), (key_file.name, name)
            assert 2 == run(["decrypt", str(source / name), "--out", str(lab / "attempt")])
            assert "none of the keys tried" in capsys.readouterr().err
            assert not (lab / "attempt").exists()

    # the key is gone from the table file itself; the log verifies and holds one destroy
    raw = release_key.raw()
    table = _table(home).path.read_bytes()
    assert [] == [form for form in (raw, raw.hex().encode(), base64.b64encode(raw)) if form in table]
    assert 0 == run(["audit", "verify"])
    entries = TransferLog(home / "transfer-log.jsonl").entries()
    destroyed = [e for e in entries if e["event"] == "release.destroyed"]
    assert [RELEASE_ID] == [e["release_id"] for e in destroyed]
    assert release_key.public_key().fingerprint == destroyed[0]["key_fingerprints"]["release_key"]
    assert {"stored_copies": 1, "files": len(names)} == {
        k: v for k, v in destroyed[0]["counts"].items() if k != "bytes"
    }


def test_destroy_without_yes_off_a_terminal_is_refused_and_changes_nothing(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --yes and no terminal to confirm on: exit 2 with one line; the stored copy still opens."""
    assert 0 == run(["release", "store", str(lab / "release"), "--to", str(lab / "stored")])
    capsys.readouterr()
    assert 2 == run(["release", "destroy", RELEASE_ID])
    assert [f"genegate: error: destroying the key of release {RELEASE_ID} cannot be undone; pass --yes"] == (
        capsys.readouterr().err.splitlines()
    )
    assert 0 == run(["release", "open", RELEASE_ID, "--from", str(lab / "stored"), "--out", str(lab / "out")])
    capsys.readouterr()
    assert 0 == run(["--json", "release", "list"])
    listed = json.loads(capsys.readouterr().out)
    assert [(RELEASE_ID, "live", 1)] == [(r["release_id"], r["state"], r["copies"]) for r in listed]
