"""Interoperability with the reference Crypt4GH implementation (crypt4gh 1.8.6): its library and its CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import crypt4gh.keys
import crypt4gh.lib
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.keyfiles import PublicKey, SecretKey, decode_secret_key, encode_secret_key, parse_public_key
from transfer.envelope import decrypt_file, encrypt_file, reencrypt_file

BIN = Path(sys.executable).parent
SEG = 65536


def run(
    argv: list[str], stdin: Path | bytes, stdout: Path | None = None, passphrase: str | None = None
) -> bytes:
    """Run a reference command detached from any terminal (so getpass reads stdin); its stdout bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C4GH_")}
    if passphrase is not None:
        env["C4GH_PASSPHRASE"] = passphrase
    data = stdin.read_bytes() if isinstance(stdin, Path) else stdin
    done = subprocess.run(
        argv, input=data, capture_output=True, env=env, check=False, start_new_session=True, timeout=120
    )
    assert (0, argv) == (done.returncode, argv), done.stderr.decode(errors="replace")
    if stdout is not None:
        stdout.write_bytes(done.stdout)
    return done.stdout


def c4gh(*args: str, stdin: Path, stdout: Path, passphrase: str | None = None) -> None:
    run([str(BIN / "crypt4gh"), *args], stdin, stdout, passphrase)


class Party:
    """Someone's key files in tmp_path, made by us, by crypt4gh-keygen, or as an OpenSSH ed25519 key."""

    def __init__(self, tmp_path: Path, name: str, kind: str) -> None:
        self.sec, self.pub, self.passphrase = (
            tmp_path / f"{name}.sec",
            tmp_path / f"{name}.pub",
            f"{name} pass",
        )
        if kind == "ours":
            key = SecretKey.generate()
            self.sec.write_bytes(encode_secret_key(key, self.passphrase, comment=name))
            self.pub.write_text(key.public_key().to_pem(), encoding="ascii")
        elif kind == "keygen":
            answer = f"{self.passphrase}\n{self.passphrase}\n".encode()
            run([str(BIN / "crypt4gh-keygen"), "--sk", str(self.sec), "--pk", str(self.pub), "-f"], answer)
        else:
            signer = Ed25519PrivateKey.generate()
            self.sec.write_bytes(
                signer.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.OpenSSH,
                    serialization.BestAvailableEncryption(self.passphrase.encode()),
                )
            )
            line = signer.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            self.pub.write_bytes(line + f" {name}@partner.example\n".encode())

    def public_key(self) -> PublicKey:
        return parse_public_key(self.pub.read_text(encoding="ascii"), str(self.pub))

    def secret_key(self) -> SecretKey:
        return decode_secret_key(self.sec.read_bytes(), self.passphrase, str(self.sec))

    def their_decrypt(self, src: Path, dst: Path, *extra: str) -> bytes:
        c4gh("decrypt", "--sk", str(self.sec), *extra, stdin=src, stdout=dst, passphrase=self.passphrase)
        return dst.read_bytes()


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "cohort.vcf"
    path.write_bytes(os.urandom(3 * SEG + 1234))
    return path


@pytest.mark.parametrize("size", [0, 1, SEG, 3 * SEG + 7])
def test_our_file_decrypts_with_their_library_using_our_key_file(tmp_path: Path, size: int) -> None:
    """The reference library loads our encrypted key file and decrypts our envelope of any size."""
    lab = Party(tmp_path, "lab", "ours")
    (tmp_path / "a").write_bytes(data := os.urandom(size))
    encrypt_file(tmp_path / "a", tmp_path / "a.c4gh", [lab.public_key()])
    secret = crypt4gh.keys.get_private_key(str(lab.sec), lambda: lab.passphrase)
    out = io.BytesIO()
    with (tmp_path / "a.c4gh").open("rb") as fin:
        crypt4gh.lib.decrypt([(0, secret, None)], fin, out)
    assert data == out.getvalue()


def test_our_multi_recipient_file_decrypts_with_their_cli_for_every_key_kind(
    tmp_path: Path, plain: Path
) -> None:
    """One file for a keygen key, an ssh-ed25519 key and our own key: their CLI decrypts it for each."""
    parties = [
        Party(tmp_path, "zurich", "keygen"),
        Party(tmp_path, "tokyo", "ssh"),
        Party(tmp_path, "lab", "ours"),
    ]
    encrypt_file(plain, tmp_path / "c.c4gh", [p.public_key() for p in parties])
    expected = plain.read_bytes()
    assert [expected] * 3 == [
        p.their_decrypt(tmp_path / "c.c4gh", tmp_path / f"{i}.out") for i, p in enumerate(parties)
    ]


def test_their_cli_accepts_our_writer_key_as_sender(tmp_path: Path, plain: Path) -> None:
    """A file we write with the lab key as writer passes `crypt4gh decrypt --sender_pk lab.pub`."""
    lab, partner = Party(tmp_path, "lab", "ours"), Party(tmp_path, "zurich", "keygen")
    encrypt_file(plain, tmp_path / "c.c4gh", [partner.public_key()], writer=lab.secret_key())
    assert plain.read_bytes() == partner.their_decrypt(
        tmp_path / "c.c4gh", tmp_path / "out", "--sender_pk", str(lab.pub)
    )


def test_their_cli_file_decrypts_with_ours(tmp_path: Path, plain: Path) -> None:
    """`crypt4gh encrypt` for their key and ours (with their writer key): we decrypt it with either key file."""
    lab, partner = Party(tmp_path, "lab", "ours"), Party(tmp_path, "zurich", "keygen")
    c4gh(
        "encrypt",
        "--sk",
        str(partner.sec),
        "--recipient_pk",
        str(lab.pub),
        "--recipient_pk",
        str(partner.pub),
        stdin=plain,
        stdout=tmp_path / "c.c4gh",
        passphrase=partner.passphrase,
    )
    for party in (lab, partner):
        decrypt_file(tmp_path / "c.c4gh", tmp_path / "out", [party.secret_key()])
        assert plain.read_bytes() == (tmp_path / "out").read_bytes()


def test_their_key_files_load_with_ours(tmp_path: Path) -> None:
    """crypt4gh-keygen's encrypted (scrypt) and --nocrypt keys open and match their public key files."""
    encrypted = Party(tmp_path, "zurich", "keygen")
    run(
        [
            str(BIN / "crypt4gh-keygen"),
            "--sk",
            str(tmp_path / "n.sec"),
            "--pk",
            str(tmp_path / "n.pub"),
            "-f",
            "--nocrypt",
        ],
        b"",
    )
    plain_key = decode_secret_key((tmp_path / "n.sec").read_bytes(), None, "n.sec")
    assert [encrypted.public_key(), parse_public_key((tmp_path / "n.pub").read_text(), "n.pub")] == [
        encrypted.secret_key().public_key(),
        plain_key.public_key(),
    ]


def test_our_reencrypted_file_decrypts_with_theirs_and_keeps_the_payload(tmp_path: Path, plain: Path) -> None:
    """Re-keyed for their key, the file decrypts with their CLI and its payload equals the source's payload."""
    lab, partner = Party(tmp_path, "lab", "ours"), Party(tmp_path, "tokyo", "ssh")
    source = encrypt_file(plain, tmp_path / "at-rest.c4gh", [lab.public_key()])
    digest = reencrypt_file(
        tmp_path / "at-rest.c4gh", tmp_path / "out.c4gh", [lab.secret_key()], [partner.public_key()]
    )
    old, new = (tmp_path / "at-rest.c4gh").read_bytes(), (tmp_path / "out.c4gh").read_bytes()
    assert (plain.read_bytes(), old[source.header_bytes :]) == (
        partner.their_decrypt(tmp_path / "out.c4gh", tmp_path / "out"),
        new[digest.header_bytes :],
    )


def test_their_reencrypted_file_decrypts_with_ours(tmp_path: Path, plain: Path) -> None:
    """`crypt4gh reencrypt` of our file, from their key to ours, decrypts here."""
    lab, partner = Party(tmp_path, "lab", "ours"), Party(tmp_path, "zurich", "keygen")
    encrypt_file(plain, tmp_path / "c.c4gh", [partner.public_key()])
    c4gh(
        "reencrypt",
        "--sk",
        str(partner.sec),
        "--recipient_pk",
        str(lab.pub),
        stdin=tmp_path / "c.c4gh",
        stdout=tmp_path / "r.c4gh",
        passphrase=partner.passphrase,
    )
    decrypt_file(tmp_path / "r.c4gh", tmp_path / "out", [lab.secret_key()])
    assert plain.read_bytes() == (tmp_path / "out").read_bytes()


def test_their_rearranged_file_decrypts_with_ours_as_with_theirs(tmp_path: Path, plain: Path) -> None:
    """A file with an edit list from `crypt4gh rearrange` gives the same bytes here as with their decrypt."""
    lab = Party(tmp_path, "lab", "ours")
    encrypt_file(plain, tmp_path / "c.c4gh", [lab.public_key()])
    c4gh(
        "rearrange",
        "--sk",
        str(lab.sec),
        "--range",
        "70000-170000",
        stdin=tmp_path / "c.c4gh",
        stdout=tmp_path / "r.c4gh",
        passphrase=lab.passphrase,
    )
    decrypt_file(tmp_path / "r.c4gh", tmp_path / "ours", [lab.secret_key()])
    theirs = lab.their_decrypt(tmp_path / "r.c4gh", tmp_path / "theirs")
    assert (theirs, 99_999) == ((tmp_path / "ours").read_bytes(), len(theirs))
