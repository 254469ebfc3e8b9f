"""One send of a release to a recipient at a time (transfer.sending): a second sender fails at once,
before the gate, leaving the destination and the transfer log as they were."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cli import run
from keys import Passphrase
from tests.support.releases import OutboxWorld, assessed_summary_release, outbox_world
from transfer import TransferBusy, send_release, sending

PASS = Passphrase("correct horse battery")
TODAY = dt.datetime.now(dt.UTC).date()

# Holds the send lock of (argv[2], argv[3]) in keystore argv[1] until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from transfer import sending

with sending(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    assessed_summary_release(root, PASS)
    return root


@pytest.fixture
def world(template: Path, tmp_path: Path) -> OutboxWorld:
    return outbox_world(template, tmp_path, PASS, TODAY)


def test_a_second_sender_of_the_same_pair_is_refused_and_others_are_not(tmp_path: Path) -> None:
    """Same release and recipient: refused while held, free once released; another recipient or
    release is never blocked. The lock file's name says nothing about either."""
    release, other = tmp_path / "rel-a", tmp_path / "rel-b"
    with sending(tmp_path, release, "ch-zurich"):
        busy = pytest.raises(TransferBusy, match="another genegate is sending this release to ch-zurich")
        with busy, sending(tmp_path, release, "ch-zurich"):
            pass
        with sending(tmp_path, release, "jp-tokyo"), sending(tmp_path, other, "ch-zurich"):
            pass
    with sending(tmp_path, release, "ch-zurich"):
        pass
    names = [p.name for p in (tmp_path / "locks").iterdir()]
    assert (3, []) == (len(names), [n for n in names if "zurich" in n or "rel-" in n])
    assert 0o700 == (tmp_path / "locks").stat().st_mode & 0o777


def test_send_release_while_another_process_sends_it_changes_nothing(world: OutboxWorld) -> None:
    """A process holding the pair's lock makes send_release fail before the gate: no log entry, no
    outbox; once that process ends (the kernel drops its lock) the same call delivers."""
    wrapper = world.store.vault_wrapper(PASS)
    argv = [sys.executable, "-c", HOLDER, str(world.store.home), str(world.release), "ch-zurich"]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None
            assert b"held\n" == holder.stdout.readline()
            with pytest.raises(TransferBusy):
                send_release(
                    world.store, world.release, "ch-zurich", PASS, TODAY, wrapper=wrapper, log=world.log
                )
            assert ([], False) == (list(world.log.entries()), world.outbox.exists())
        finally:
            holder.kill()  # no clean release: the lock must not outlive its process
    deadline = time.monotonic() + 10
    result = None
    while result is None and time.monotonic() < deadline:
        try:
            result = send_release(
                world.store, world.release, "ch-zurich", PASS, TODAY, wrapper=wrapper, log=world.log
            )
        except TransferBusy:
            time.sleep(0.1)
    assert result is not None
    assert ["transfer.delivered"] == [e["event"] for e in world.log.entries()]


def test_cli_transfer_while_another_process_sends_it_exits_1_with_one_line(
    world: OutboxWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS.reveal())
    with sending(world.store.home, world.release, "ch-zurich"):
        code = run(["--home", str(world.store.home), "transfer", str(world.release), "--to", "ch-zurich"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (1, 1) == (code, len(lines))
    assert "another genegate is sending this release to ch-zurich now" in lines[0]
