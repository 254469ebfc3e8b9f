"""`genegate transfer RELEASE --to RECIPIENT` without --dry-run: deliver, summarise, exit codes 0/3/2/1."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import crypt4gh.keys
import crypt4gh.lib
import pytest

from flows.cli import run
from keys import Keystore, Passphrase, SecretKey, encode_secret_key
from tests.support.releases import assessed_summary_release, register_partner
from transfer import TransferLog
from transfer.facts import TRANSFER_LOG

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore with a summary-only release that passed assessment (built once per module)."""
    root = tmp_path_factory.mktemp("template")
    assessed_summary_release(root, PASS)
    return root


def _register(
    store: Keystore, rid: str, country: str, region: str, destination: str, *, bases: bool
) -> SecretKey:
    """Register a recipient (the demo's Swiss partner when bases=True: contract + APPI/PIPL/HGR)."""
    return register_partner(store, PASS, rid, country, region, destination, bases=bases, today=TODAY)


@pytest.fixture
def home(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private keystore and release; the CLI finds them through GENEGATE_HOME and GENEGATE_PASSPHRASE."""
    shutil.copytree(template / "ks", tmp_path / "ks")
    shutil.copytree(template / "releases" / "the-release", tmp_path / "release")
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS.reveal())
    return tmp_path / "ks"


def _log_events(home: Path) -> list[str]:
    return [str(e["event"]) for e in TransferLog(home / TRANSFER_LOG).entries()]


def test_transfer_delivers_and_a_rerun_reports_unchanged(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 with a JSON summary of files, bytes and destination; the files decrypt; a re-run is unchanged."""
    outbox = tmp_path / "outbox" / "ch-zurich"
    key = _register(Keystore(home), "ch-zurich", "CH", "eu-central-2", outbox.as_uri(), bases=True)
    release = str(tmp_path / "release")
    capsys.readouterr()
    assert 0 == run(["transfer", release, "--to", "ch-zurich", "--json"])
    doc = json.loads(capsys.readouterr().out)
    root = next(outbox.iterdir())
    assert ("delivered", root.as_uri()) == (doc["outcome"], doc["destination"])
    assert sorted(f["name"] for f in doc["files"]) == sorted(doc["sent"])
    assert sum(f["bytes"] for f in doc["files"]) == doc["bytes_sent"]
    secret_file = tmp_path / "partner.sec"
    secret_file.write_bytes(encode_secret_key(key, PASS.reveal()))
    secret = crypt4gh.keys.get_private_key(str(secret_file), PASS.reveal)
    for entry in doc["files"]:
        plain = io.BytesIO()
        with open(root / entry["name"], "rb") as fin:
            crypt4gh.lib.decrypt([(0, secret, None)], fin, plain)
        assert (tmp_path / "release" / entry["name"].removesuffix(".c4gh")).read_bytes() == plain.getvalue()
    assert 0 == run(["transfer", release, "--to", "ch-zurich"])
    text = capsys.readouterr().out
    assert text.startswith(f"unchanged: release {root.name} is already at {root.as_uri()}")
    assert ["transfer.delivered", "transfer.unchanged"] == _log_events(home)


def test_a_denied_transfer_exits_3_logs_and_sends_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EU-origin data to a US recipient without a basis: exit 3, one stderr line, "transfer.denied" logged."""
    outbox = tmp_path / "outbox" / "us-boston"
    _register(Keystore(home), "us-boston", "US", "us-east-1", outbox.as_uri(), bases=False)
    capsys.readouterr()
    assert 3 == run(["transfer", str(tmp_path / "release"), "--to", "us-boston"])
    captured = capsys.readouterr()
    assert ("", 1) == (captured.out, len(captured.err.strip().splitlines()))
    assert captured.err.startswith("genegate: transfer denied by the gate (")
    assert not outbox.exists()
    assert ["transfer.denied"] == _log_events(home)


def test_a_delivery_failure_exits_1_and_is_logged(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outbox path that is a regular file cannot hold the delivery: exit 1, one line, "transfer.failed"."""
    blocker = tmp_path / "outbox"
    blocker.write_text("not a directory")
    _register(Keystore(home), "ch-zurich", "CH", "eu-central-2", (blocker / "ch-zurich").as_uri(), bases=True)
    capsys.readouterr()
    assert 1 == run(["transfer", str(tmp_path / "release"), "--to", "ch-zurich"])
    err = capsys.readouterr().err.strip().splitlines()
    assert 1 == len(err)
    assert err[0].startswith("genegate: error: transfer failed: ")
    assert ["transfer.failed"] == _log_events(home)


def test_bad_s3_configuration_exits_2(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GENEGATE_S3_PART_SIZE below 5 MiB is bad input: exit 2, the message names the variable."""
    monkeypatch.setenv("GENEGATE_S3_PART_SIZE", "1024")
    _register(Keystore(home), "ch-zurich", "CH", "eu-central-2", "s3://zurich-inbox/in", bases=True)
    capsys.readouterr()
    assert 2 == run(["transfer", str(tmp_path / "release"), "--to", "ch-zurich"])
    assert "GENEGATE_S3_PART_SIZE" in capsys.readouterr().err
    assert ["transfer.failed"] == _log_events(home)
