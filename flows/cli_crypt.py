"""`genegate encrypt | decrypt | reencrypt`: Crypt4GH files for registered recipients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.console import out, passphrase, settings, today
from flows.errors import UsageProblem
from keys import Keystore, PublicKey
from transfer import EnvelopeDigest, decrypt_file, encrypt_file, reencrypt_file

LAB = "lab"


def _fresh(path: Path) -> Path:
    if path.exists():
        raise UsageProblem(f"--out {path} already exists; choose a new name or remove it first")
    if not path.parent.is_dir():
        raise UsageProblem(f"--out {path}: directory {path.parent} does not exist")
    return path


def _readable(path: Path) -> Path:
    if not path.is_file():
        raise UsageProblem(f"{path}: no such file")
    return path


def _public_keys(store: Keystore, ids: list[str]) -> list[PublicKey]:
    """Recipient ids to keys; `lab` is the lab's current key. Each recipient must be usable today."""
    others = [i for i in ids if i != LAB]
    keys = [r.public_key for r in store.recipients_for(others, today())]
    if LAB in ids:
        keys.insert(0, store.lab_public_key())
    if len({k.fingerprint for k in keys}) != len(keys):
        raise UsageProblem("--to names the same key twice")
    return keys


def _report(
    ctx: typer.Context, action: str, target: Path, digest: EnvelopeDigest, fingerprints: list[str]
) -> None:
    data = {
        "action": action,
        "out": str(target),
        "plaintext_sha256": digest.plaintext_sha256 or None,
        "ciphertext_sha256": digest.ciphertext_sha256 or None,
        "plaintext_bytes": digest.plaintext_bytes,
        "ciphertext_bytes": digest.ciphertext_bytes,
        "recipients": fingerprints,
    }
    if settings(ctx).json:
        out.print_json(json.dumps(data))
    else:
        out.print(str(target), markup=False)


def register_crypt_commands(app: typer.Typer) -> None:
    """Add encrypt, decrypt and reencrypt to the top-level app."""

    @app.command()
    def encrypt(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="Plaintext file.")],
        to: Annotated[list[str], typer.Option(help="Recipient id (repeat); `lab` is the lab itself.")],
        out_file: Annotated[Path, typer.Option("--out", help="The .c4gh file to create.")],
    ) -> None:
        """Encrypt a file with Crypt4GH for one or more recipients (no passphrase needed)."""
        store = Keystore(settings(ctx).home)
        keys = _public_keys(store, to)
        digest = encrypt_file(_readable(file), _fresh(out_file), keys)
        _report(ctx, "encrypt", out_file, digest, [k.fingerprint for k in keys])

    @app.command()
    def decrypt(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="Crypt4GH file encrypted for the lab.")],
        out_file: Annotated[Path, typer.Option("--out", help="The plaintext file to create.")],
    ) -> None:
        """Decrypt a Crypt4GH file with the lab's keys (current and retired)."""
        store = Keystore(settings(ctx).home)
        keys = store.lab_secret_keys(passphrase())
        digest = decrypt_file(_readable(file), _fresh(out_file), keys)
        _report(ctx, "decrypt", out_file, digest, [k.public_key().fingerprint for k in keys[:1]])

    @app.command()
    def reencrypt(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="Crypt4GH file encrypted for the lab.")],
        to: Annotated[list[str], typer.Option(help="New recipient id (repeat); `lab` is the lab itself.")],
        out_file: Annotated[Path, typer.Option("--out", help="The .c4gh file to create.")],
    ) -> None:
        """Re-key a Crypt4GH file for new recipients by rewriting only its header."""
        store = Keystore(settings(ctx).home)
        recipients = _public_keys(store, to)
        keys = store.lab_secret_keys(passphrase())
        digest = reencrypt_file(_readable(file), _fresh(out_file), keys, recipients)
        _report(ctx, "reencrypt", out_file, digest, [k.fingerprint for k in recipients])
