"""Regenerate the Crypt4GH golden files with the reference implementation (crypt4gh 1.8.6).

    .venv/bin/python tests/golden/crypt4gh/make_golden.py

Every key file and ciphertext here is written by the reference library, not by genegate, so the
golden test (tests/unit/transfer/test_envelope.py) holds our key reader, header parser and
decryptor to an independent writer. No other Crypt4GH implementation commits vectors (they all
generate ciphertext at test time), hence these.

Ciphertext is randomized (data keys, nonces, writer keys), so a regeneration rewrites every file
and manifest.json, which records what the test checks: each file's readers, header packets
(length, method, writer key), edit list, segment count and plaintext SHA-256. Plaintexts are not
committed: each is SHAKE-256 of "genegate golden <name>" (function `plaintext`, repeated in the test).

Keys (the passphrase of each is its name):
    alice.sec   scrypt, label CRYPT4GH PRIVATE KEY (what crypt4gh-keygen writes)
    bob.sec     bcrypt (100 rounds), the reference's fallback KDF
    carol.sec   pbkdf2_hmac_sha256 (100,000 iterations), assembled from the reference's KDF
    erin.sec    unencrypted (kdf none): the X25519 twin of the Ed25519 key in erin.ssh.pub
    sender.sec  scrypt; the writer key of two-recipients.c4gh (its packets carry sender.pub)
Files:
    size-{0,1,65535,65536,65537}.c4gh   for alice, throwaway writer: segment boundaries
    two-recipients.c4gh                 70,000 bytes for alice and bob, written by sender
    ssh-recipient.c4gh                  1,000 bytes for erin, addressed to the ssh-ed25519 key
    edit-list.c4gh                      for carol: 3 segments + 10 bytes, then `rearrange`
                                        (offset 66,000, span 1,000): one segment, an edit list
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from base64 import b64encode
from pathlib import Path

from crypt4gh import header, lib
from crypt4gh.keys import c4gh, get_private_key, get_public_key, kdf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

HERE = Path(__file__).resolve().parent
SIZES = (0, 1, 65535, 65536, 65537)


def plaintext(name: str, size: int) -> bytes:
    """The deterministic plaintext of a golden file."""
    return hashlib.shake_256(f"genegate golden {name}".encode()).digest(size)


def pem(label: str, body: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n".encode() + b64encode(body) + f"\n-----END {label}-----\n".encode()


def write_key(name: str, sk: bytes, encoded: bytes) -> dict[str, str]:
    (HERE / f"{name}.sec").write_bytes(pem("CRYPT4GH PRIVATE KEY", encoded))
    pk = X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes_raw()
    (HERE / f"{name}.pub").write_bytes(pem("CRYPT4GH PUBLIC KEY", pk))
    return {"passphrase": name, "fingerprint": "SHA256:" + hashlib.sha256(pk).hexdigest()}


def make_keys() -> dict[str, dict[str, str]]:
    """The key files; returns name -> passphrase and public key fingerprint."""
    keys = {}
    for name in ("alice", "sender"):
        sk = os.urandom(32)
        keys[name] = write_key(name, sk, c4gh.encode_private_key(sk, name.encode(), b"golden"))
    sk = os.urandom(32)
    c4gh.scrypt_supported = False  # the reference then falls back to bcrypt
    keys["bob"] = write_key("bob", sk, c4gh.encode_private_key(sk, b"bob", b"golden"))
    c4gh.scrypt_supported = True
    sk, salt, nonce = os.urandom(32), os.urandom(16), os.urandom(12)
    rounds = kdf.get_kdf(b"pbkdf2_hmac_sha256")[1]
    derived = kdf.derive_key(b"pbkdf2_hmac_sha256", b"carol", salt, rounds)
    sealed = nonce + ChaCha20Poly1305(derived).encrypt(nonce, sk, None)
    body = (
        c4gh.MAGIC_WORD
        + c4gh.encode_string(b"pbkdf2_hmac_sha256")
        + c4gh.encode_string(rounds.to_bytes(4, "big") + salt)
        + c4gh.encode_string(b"chacha20_poly1305")
        + c4gh.encode_string(sealed)
    )
    keys["carol"] = write_key("carol", sk, body)
    ssh_key = Ed25519PrivateKey.generate()
    ssh_line = ssh_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    (HERE / "erin.ssh.pub").write_bytes(ssh_line + b" erin@golden\n")
    openssh = ssh_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    scratch = HERE / "erin.ssh.tmp"
    scratch.write_bytes(openssh)
    sk = get_private_key(str(scratch), lambda: "")  # the reference's Ed25519 -> X25519 conversion
    scratch.unlink()
    keys["erin"] = write_key("erin", sk, c4gh.encode_private_key(sk, None, None))
    keys["erin"]["passphrase"] = ""
    return keys


def secret(name: str, keys: dict[str, dict[str, str]]) -> bytes:
    passphrase = keys[name]["passphrase"]
    return bytes(get_private_key(str(HERE / f"{name}.sec"), lambda: passphrase))


def describe(
    name: str, data: bytes, readers: list[str], source_bytes: int, kept: tuple[int, int]
) -> dict[str, object]:
    """What the golden test checks about one file: it decrypts to plaintext(name, source_bytes)[slice(*kept)]."""
    expected = plaintext(name, source_bytes)[kept[0] : kept[1]]
    stream = io.BytesIO(data)
    packets = list(header.parse(stream))
    payload = len(data) - stream.tell()
    return {
        "readers": readers,
        "header_bytes": stream.tell(),
        "packets": [
            {"length": len(p) + 4, "method": int.from_bytes(p[:4], "little"), "writer_pk": p[4:36].hex()}
            for p in packets
        ],
        "segments": -(-payload // 65564),
        "source_bytes": source_bytes,
        "kept": list(kept),
        "plaintext_bytes": len(expected),
        "plaintext_sha256": hashlib.sha256(expected).hexdigest(),
    }


def main() -> None:
    """Write keys, files and manifest.json."""
    for old in [*HERE.glob("*.c4gh"), *HERE.glob("*.sec"), *HERE.glob("*.pub")]:
        old.unlink()
    keys = make_keys()
    pub = {name: get_public_key(str(HERE / f"{name}.pub")) for name in keys}
    files: dict[str, dict[str, object]] = {}

    def encrypt(name: str, data: bytes, recipients: list[bytes], writer: bytes | None = None) -> bytes:
        out = io.BytesIO()
        sk = writer or os.urandom(32)
        lib.encrypt([(0, sk, pk) for pk in recipients], io.BytesIO(data), out)
        (HERE / f"{name}.c4gh").write_bytes(out.getvalue())
        return out.getvalue()

    for size in SIZES:
        name = f"size-{size}"
        body = plaintext(name, size)
        files[name] = describe(name, encrypt(name, body, [pub["alice"]]), ["alice"], size, (0, size))
    body = plaintext("two-recipients", 70_000)
    ct = encrypt("two-recipients", body, [pub["alice"], pub["bob"]], secret("sender", keys))
    files["two-recipients"] = describe("two-recipients", ct, ["alice", "bob"], 70_000, (0, 70_000))
    files["two-recipients"]["writer"] = "sender"
    ssh_pk = get_public_key(str(HERE / "erin.ssh.pub"))
    assert ssh_pk == pub["erin"], "the ssh-ed25519 key and erin.pub must be the same X25519 key"
    body = plaintext("ssh-recipient", 1_000)
    ssh_file = encrypt("ssh-recipient", body, [ssh_pk])
    files["ssh-recipient"] = describe("ssh-recipient", ssh_file, ["erin"], 1_000, (0, 1_000))
    body = plaintext("edit-list", 3 * 65536 + 10)
    whole = encrypt("edit-list", body, [pub["carol"]])
    carol = secret("carol", keys)
    out = io.BytesIO()
    lib.rearrange([(0, carol, pub["carol"])], io.BytesIO(whole), out, offset=66_000, span=1_000)
    (HERE / "edit-list.c4gh").write_bytes(out.getvalue())
    files["edit-list"] = describe("edit-list", out.getvalue(), ["carol"], len(body), (66_000, 67_000))
    files["edit-list"]["edit_list"] = [66_000 - 65536, 1_000]  # segment 0 was dropped
    manifest = {
        "generator": "crypt4gh 1.8.6 (tests/golden/crypt4gh/make_golden.py)",
        "keys": keys,
        "files": files,
    }
    (HERE / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
