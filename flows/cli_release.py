"""`genegate release store | open | destroy | list`: releases at rest, crypto-shredded on demand.

Library: transfer/at_rest.py (the design and its limits) and keys/release_keys.py (the key table).
Exit codes: 0 done (a second destroy of the same release is done too), 2 bad input, including
opening a release whose key was destroyed: what is asked for no longer exists. 1 failure.
`destroy` asks for confirmation on a terminal; elsewhere it needs --yes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.console import err, out, passphrase, settings
from flows.errors import UsageProblem
from keys import Keystore, Passphrase, ReleaseKeys
from transfer import SHREDDING_LIMIT, TRANSFER_LOG, TransferLog, destroy_release, open_release, store_release

release_app = typer.Typer(
    help="Releases encrypted at rest under a key of their own; destroy the key to shred every copy.",
    no_args_is_help=True,
)


def register_release_commands(app: typer.Typer) -> None:
    """Add the `release` group to the top-level app."""
    app.add_typer(release_app, name="release")


def _open_keystore(ctx: typer.Context) -> tuple[Keystore, Passphrase, ReleaseKeys, TransferLog]:
    store = Keystore(settings(ctx).home)
    secret = passphrase()
    keys = ReleaseKeys(store.home, store.vault_wrapper(secret))
    return store, secret, keys, TransferLog(store.home / TRANSFER_LOG)


@release_app.command("store")
def store_command(
    ctx: typer.Context,
    release: Annotated[Path, typer.Argument(help="The release directory (releases/<id>).")],
    to: Annotated[Path, typer.Option("--to", help="Storage directory; the copy goes to DIR/<release_id>/.")],
) -> None:
    """Encrypt the release (every file, release.json included) for a key of its own, kept in the keystore."""
    if not (release / "release.json").is_file():
        raise UsageProblem(f"{release}: not a release directory (no release.json); give releases/<id>")
    store, secret, keys, log = _open_keystore(ctx)
    stored = store_release(release, to, keys, log=log, signer=store.signing_key(secret))
    if settings(ctx).json:
        out.print_json(json.dumps(stored.to_json()))
        return
    err.print(
        f"release {stored.release_id}: {len(stored.files)} files stored for release key "
        f"{stored.key_fingerprint[:23]}... (copy {stored.copies}); "
        f"`genegate release destroy {stored.release_id}` makes every copy unreadable",
        markup=False,
        soft_wrap=True,
    )
    out.print(str(stored.directory), markup=False)


@release_app.command("open")
def open_command(
    ctx: typer.Context,
    release_id: Annotated[str, typer.Argument(metavar="ID", help="The release id.")],
    source: Annotated[Path, typer.Option("--from", help="Storage directory given to `store --to`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to restore into, as DIR/<release_id>/.")],
) -> None:
    """Decrypt a stored copy and check every file against release.json."""
    store, secret, keys, log = _open_keystore(ctx)
    opened = open_release(release_id, source, out_dir, keys, log=log, signer=store.signing_key(secret))
    if settings(ctx).json:
        out.print_json(json.dumps(opened.to_json()))
        return
    out.print(str(opened.directory), markup=False)


@release_app.command("destroy")
def destroy_command(
    ctx: typer.Context,
    release_id: Annotated[str, typer.Argument(metavar="ID", help="The release id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy the release's key: every stored copy, backups included, becomes unreadable. Logged."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageProblem(f"destroying the key of release {release_id} cannot be undone; pass --yes")
        typer.confirm(
            f"Destroy the key of release {release_id}? Every stored copy becomes unreadable, for good",
            abort=True,
            err=True,
        )
    store, secret, keys, log = _open_keystore(ctx)
    result = destroy_release(release_id, keys, log=log, signer=store.signing_key(secret))
    record = result.record
    day = (record.destroyed_at or "")[:10]
    if settings(ctx).json:
        out.print_json(json.dumps({**record.to_json(), "already": result.already}))
    elif result.already:
        out.print(f"release {release_id}: already destroyed on {day}; nothing to do", markup=False)
    else:
        out.print(
            f"release {release_id}: key {record.fingerprint[:23]}... destroyed on {day}; "
            f"its {record.copies} stored copies (and any backup of them) are unreadable",
            markup=False,
        )
    err.print(f"reminder: {SHREDDING_LIMIT}.", markup=False, soft_wrap=True)


@release_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Releases with a key at rest: live or destroyed, with dates and counts (no key material)."""
    _, _, keys, _ = _open_keystore(ctx)
    records = keys.records()
    if settings(ctx).json:
        out.print_json(json.dumps([r.to_json() for r in records.values()]))
        return
    for record in records.values():
        when = record.destroyed_at or record.created_at
        out.print(
            f"{record.release_id}\t{record.state}\t{when[:10]}\t{record.copies} copies\t{record.files} files",
            markup=False,
        )
