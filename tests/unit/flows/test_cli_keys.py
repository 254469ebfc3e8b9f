"""Operator flows through the CLI: keys, recipients, bases, encrypt/decrypt/reencrypt, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flows.cli import run
from keys import SecretKey
from keys.keyfiles import decode_secret_key, encode_secret_key

PASS = "correct horse battery"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """An initialised keystore with one Crypt4GH-key recipient; the passphrase comes from the environment."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS)
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    assert 0 == run(["keys", "init"])
    partner = SecretKey.generate()
    (tmp_path / "zurich.sec").write_bytes(encode_secret_key(partner, "partner passphrase"))
    (tmp_path / "zurich.pub").write_text(partner.public_key().to_pem())
    assert 0 == run(
        [
            "keys", "add-recipient", "ch-zurich", "--name", "Zurich Genomics AG", "--country", "CH",
            "--public-key", str(tmp_path / "zurich.pub"), "--destination", "file:///srv/outbox/zurich",
            "--region", "eu-central-2", "--purpose", "DUO:0000006",
        ]
    )  # fmt: skip
    capsys.readouterr()
    return tmp_path / "ks"


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_init_then_show_lab(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`keys show lab` names lab.pub and one current key; fingerprints are SHA-256."""
    assert 0 == run(["--json", "keys", "show", "lab"])
    shown = _json(capsys)
    assert isinstance(shown, dict)
    assert str(home / "lab.pub") == shown["lab_public_key"]
    assert ["current"] == [k["status"] for k in shown["lab_keys"]]
    assert shown["lab_keys"][0]["fingerprint"].startswith("SHA256:")


def test_ssh_ed25519_recipient_and_basis(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ssh-ed25519 key registers; a basis with TIA evidence is listed against the recipient."""
    ssh = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    (tmp_path / "tokyo.pub").write_bytes(ssh + b" partner@tokyo\n")
    assert 0 == run(
        [
            "keys", "add-recipient", "jp-tokyo", "--name", "Tokyo MedGen KK", "--country", "JP",
            "--public-key", str(tmp_path / "tokyo.pub"), "--destination", "s3://tokyo-inbox/genegate",
            "--region", "ap-northeast-1", "--valid-until", "2030-01-01",
        ]
    )  # fmt: skip
    assert 0 == run(
        [
            "keys", "add-basis", "jp-tokyo", "--type", "scc_eu_2021", "--ref", "SCC-2026-3", "--signed",
            "2026-05-01", "--module", "1", "--tia-ref", "TIA-2026-3", "--tia-date", "2026-04-20",
        ]
    )  # fmt: skip
    capsys.readouterr()
    assert 0 == run(["--json", "keys", "list"])
    listed = _json(capsys)
    assert isinstance(listed, list)
    assert [("ch-zurich", "crypt4gh", []), ("jp-tokyo", "ssh-ed25519", ["scc_eu_2021"])] == [
        (r["id"], r["key_format"], [b["type"] for b in r["bases"]]) for r in listed
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "add-basis", "ch-zurich", "--type", "scc_eu_2021", "--ref", "S", "--signed", "2026-01-01"],
         "a scc_eu_2021 basis needs --module"),
        (["keys", "add-basis", "ch-zurich", "--type", "dpf", "--ref", "D", "--signed", "01/02/2026"],
         "--signed '01/02/2026' is not an ISO date (YYYY-MM-DD)"),
        (["keys", "add-basis", "nobody", "--type", "dpf", "--ref", "D", "--signed", "2026-01-01"],
         "no recipient 'nobody'"),
        (["keys", "show", "nobody"], "no recipient 'nobody'"),
    ],
)  # fmt: skip
def test_bad_key_commands_are_one_line(
    home: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input to keys commands: exit 2 and one stderr line naming the field."""
    assert 2 == run(argv)
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert message in err


def test_malformed_public_key_is_refused(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a public key is refused, naming the file; the registry is unchanged."""
    before = (home / "recipients.json").read_bytes()
    (tmp_path / "bad.pub").write_text(
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAAA\n-----END CRYPT4GH PUBLIC KEY-----\n"
    )
    argv = ["keys", "add-recipient", "x-bad", "--name", "X", "--country", "DE", "--public-key"]
    assert 2 == run([*argv, str(tmp_path / "bad.pub"), "--destination", "file:///o"])
    assert str(tmp_path / "bad.pub") in capsys.readouterr().err
    assert before == (home / "recipients.json").read_bytes()


def test_wrong_passphrase_exit_2(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong passphrase is bad input: one line, exit 2, the passphrase not echoed."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", "wrong wrong wrong")
    assert 2 == run(["keys", "revoke", "ch-zurich", "--reason", "test"])
    err = capsys.readouterr().err
    assert "passphrase does not open" in err
    assert "wrong wrong" not in err


def test_encrypt_for_recipient_and_lab_round_trip(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """encrypt --to lab --to partner: the lab decrypts, the partner's key decrypts too (two header packets)."""
    from transfer import decrypt_file, header_recipients_count

    plain = tmp_path / "data.txt"
    plain.write_bytes(os.urandom(200_000))
    c4gh = tmp_path / "data.c4gh"
    assert 0 == run(["--json", "encrypt", str(plain), "--to", "lab", "--to", "ch-zurich", "--out", str(c4gh)])
    report = _json(capsys)
    assert isinstance(report, dict)
    assert 2 == header_recipients_count(c4gh)
    assert 0 == run(["decrypt", str(c4gh), "--out", str(tmp_path / "back.txt")])
    assert plain.read_bytes() == (tmp_path / "back.txt").read_bytes()
    partner = decode_secret_key((tmp_path / "zurich.sec").read_bytes(), "partner passphrase", "zurich.sec")
    decrypt_file(c4gh, tmp_path / "partner.txt", [partner])
    assert plain.read_bytes() == (tmp_path / "partner.txt").read_bytes()
    assert report["plaintext_bytes"] == 200_000


def test_reencrypt_rekeys_for_a_partner(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """reencrypt turns a lab-only file into a partner file with the same payload bytes."""
    from transfer import decrypt_file

    plain = tmp_path / "data.bin"
    plain.write_bytes(os.urandom(70_000))
    assert 0 == run(["encrypt", str(plain), "--to", "lab", "--out", str(tmp_path / "lab.c4gh")])
    assert 0 == run(
        ["reencrypt", str(tmp_path / "lab.c4gh"), "--to", "ch-zurich", "--out", str(tmp_path / "z.c4gh")]
    )
    partner = decode_secret_key((tmp_path / "zurich.sec").read_bytes(), "partner passphrase", "zurich.sec")
    decrypt_file(tmp_path / "z.c4gh", tmp_path / "z.bin", [partner])
    assert plain.read_bytes() == (tmp_path / "z.bin").read_bytes()
    lab_payload = (tmp_path / "lab.c4gh").read_bytes()[-70_000 - 2 * 28 :]
    assert lab_payload == (tmp_path / "z.c4gh").read_bytes()[-70_000 - 2 * 28 :]


def test_file_for_someone_else_and_tampered_file(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lab cannot open a partner-only file; a flipped byte is rejected; neither leaves an output file."""
    plain = tmp_path / "data.bin"
    plain.write_bytes(os.urandom(100_000))
    assert 0 == run(["encrypt", str(plain), "--to", "ch-zurich", "--out", str(tmp_path / "z.c4gh")])
    assert 2 == run(["decrypt", str(tmp_path / "z.c4gh"), "--out", str(tmp_path / "out1")])
    assert not (tmp_path / "out1").exists()
    assert 0 == run(["encrypt", str(plain), "--to", "lab", "--out", str(tmp_path / "l.c4gh")])
    data = bytearray((tmp_path / "l.c4gh").read_bytes())
    data[-100] ^= 0x40
    (tmp_path / "l.c4gh").write_bytes(bytes(data))
    capsys.readouterr()
    assert 2 == run(["decrypt", str(tmp_path / "l.c4gh"), "--out", str(tmp_path / "out2")])
    assert 1 == len(capsys.readouterr().err.strip().splitlines())
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))]


def test_revoked_recipient_and_existing_output_refused(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No encryption to a revoked recipient; an existing --out is never overwritten."""
    plain = tmp_path / "data.bin"
    plain.write_bytes(b"x" * 10)
    (tmp_path / "exists.c4gh").write_bytes(b"keep")
    assert 2 == run(["encrypt", str(plain), "--to", "lab", "--out", str(tmp_path / "exists.c4gh")])
    assert b"keep" == (tmp_path / "exists.c4gh").read_bytes()
    assert 0 == run(["keys", "revoke", "ch-zurich", "--reason", "contract ended"])
    capsys.readouterr()
    assert 2 == run(["encrypt", str(plain), "--to", "ch-zurich", "--out", str(tmp_path / "r.c4gh")])
    assert "revoked on" in capsys.readouterr().err
    assert not (tmp_path / "r.c4gh").exists()


def test_keys_rotate_old_files_still_decrypt(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After rotation, a file encrypted for the old lab key still decrypts."""
    plain = tmp_path / "data.bin"
    plain.write_bytes(os.urandom(1000))
    assert 0 == run(["encrypt", str(plain), "--to", "lab", "--out", str(tmp_path / "old.c4gh")])
    assert 0 == run(["keys", "rotate"])
    assert 0 == run(["decrypt", str(tmp_path / "old.c4gh"), "--out", str(tmp_path / "back.bin")])
    assert plain.read_bytes() == (tmp_path / "back.bin").read_bytes()


def test_no_passphrase_without_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no $GENEGATE_PASSPHRASE and no terminal, keys init says how to give one and writes nothing."""
    monkeypatch.delenv("GENEGATE_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert 2 == run(["--home", str(tmp_path / "ks"), "keys", "init"])
    assert (
        "genegate: error: no passphrase: set $GENEGATE_PASSPHRASE or run genegate in a terminal\n"
        == capsys.readouterr().err
    )
    assert not (tmp_path / "ks").exists()
