"""`genegate keys ...`: the keystore and the recipient registry, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.console import iso_date, now_stamp, out, passphrase, settings, today
from flows.errors import UsageProblem
from keys import DEFAULT_JURISDICTION, Basis, BasisType, Keystore, KmsConfig, Recipient, new_recipient

keys_app = typer.Typer(help="Lab keys, partner recipients and their transfer bases.", no_args_is_help=True)


def _store(ctx: typer.Context) -> Keystore:
    return Keystore(settings(ctx).home)


def _emit(ctx: typer.Context, data: dict[str, Any], human: str) -> None:
    if settings(ctx).json:
        out.print_json(json.dumps(data, ensure_ascii=False))
    else:
        out.print(human, markup=False)


@keys_app.command("init")
def init(
    ctx: typer.Context,
    kms_key_id: Annotated[
        str | None,
        typer.Option(help="Wrap the pseudonym vault key with this AWS KMS key instead of the lab key."),
    ] = None,
    kms_region: Annotated[str | None, typer.Option(help="Region of the KMS key.")] = None,
    kms_endpoint_url: Annotated[
        str | None, typer.Option(help="KMS endpoint (a VPC endpoint, a test server).")
    ] = None,
    jurisdiction: Annotated[
        str,
        typer.Option(help="Where the lab is established: US-CA, EU-DE, GB, CH, JP, CN (an origin regime)."),
    ] = DEFAULT_JURISDICTION,
) -> None:
    """Create the lab's Crypt4GH key pair and log-signing key (passphrase-protected)."""
    if kms_key_id is None and (kms_region or kms_endpoint_url):
        raise UsageProblem("--kms-region and --kms-endpoint-url need --kms-key-id")
    kms = KmsConfig(kms_key_id, kms_region, kms_endpoint_url) if kms_key_id else None
    store = Keystore.init(settings(ctx).home, passphrase(confirm=True), kms=kms, jurisdiction=jurisdiction)
    cfg = store.config()
    _emit(
        ctx,
        {
            "home": str(store.home),
            "lab_public_key": str(store.lab_pub_path),
            "lab_fingerprint": cfg.current.fingerprint,
            "signing_fingerprint": cfg.signing_fingerprint,
            "vault_key_wrapping": cfg.wrap_mode,
            "lab_jurisdiction": cfg.jurisdiction,
        },
        f"keystore {store.home}\nlab key {cfg.current.fingerprint} -> {store.lab_pub_path}\n"
        f"signing key {cfg.signing_fingerprint}\nvault key wrapped by {cfg.wrap_mode}\n"
        f"lab jurisdiction {cfg.jurisdiction}",
    )


@keys_app.command("rotate")
def rotate(ctx: typer.Context) -> None:
    """Add a new current lab key; older lab keys are kept and still decrypt."""
    store = _store(ctx)
    new = store.rotate(passphrase())
    _emit(ctx, {"lab_fingerprint": new.fingerprint}, f"new lab key {new.fingerprint} -> {store.lab_pub_path}")


@keys_app.command("add-recipient")
def add_recipient(
    ctx: typer.Context,
    recipient_id: Annotated[str, typer.Argument(metavar="ID", help="Short id, e.g. ch-zurich-genomics.")],
    name: Annotated[str, typer.Option(help="Legal name of the institution.")],
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country of the recipient.")],
    public_key: Annotated[Path, typer.Option(help="Crypt4GH or ssh-ed25519 public key file.")],
    destination: Annotated[str, typer.Option(help="file:///outbox/dir or s3://bucket/prefix.")],
    region: Annotated[
        str | None, typer.Option(help="Storage region of the destination, e.g. eu-central-2.")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option(help="Last day the key may be used (YYYY-MM-DD).")
    ] = None,
    purpose: Annotated[list[str] | None, typer.Option(help="Declared purpose as a DUO code; repeat.")] = None,
    contract: Annotated[
        str | None, typer.Option(help="No-reidentification contract reference (CGIPA).")
    ] = None,
    contract_signed: Annotated[str | None, typer.Option(help="Date that contract was signed.")] = None,
) -> None:
    """Register a partner institution, its public key and destination."""
    try:
        key_text = public_key.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"--public-key {public_key}: cannot read it ({type(exc).__name__})") from exc
    recipient = new_recipient(
        recipient_id,
        name=name,
        country=country,
        public_key_text=key_text,
        key_source=str(public_key),
        destination=destination,
        region=region,
        valid_until=iso_date(valid_until, "--valid-until"),
        purposes=tuple(purpose or ()),
        contract_ref=contract,
        contract_signed=iso_date(contract_signed, "--contract-signed"),
        today=today(),
        added_at=now_stamp(),
    )
    with _store(ctx).editing_registry(passphrase()) as registry:
        registry.add(recipient)
    _emit(ctx, recipient.to_json(), f"recipient {recipient.id} added, key {recipient.fingerprint}")


@keys_app.command("add-basis")
def add_basis(
    ctx: typer.Context,
    recipient_id: Annotated[str, typer.Argument(metavar="ID")],
    basis_type: Annotated[BasisType, typer.Option("--type", help="The kind of transfer basis.")],
    ref: Annotated[str, typer.Option(help="Reference of the signed document.")],
    signed: Annotated[str, typer.Option(help="Date signed (YYYY-MM-DD).")],
    expires: Annotated[str | None, typer.Option(help="Date the basis expires.")] = None,
    module: Annotated[int | None, typer.Option(help="SCC 2021 module (1-4).")] = None,
    tia_ref: Annotated[str | None, typer.Option(help="Transfer impact assessment reference.")] = None,
    tia_date: Annotated[str | None, typer.Option(help="Date of that assessment.")] = None,
    consent_ref: Annotated[str | None, typer.Option(help="Reference of the consent records.")] = None,
    filing: Annotated[str | None, typer.Option(help="Filing number (China HGR).")] = None,
) -> None:
    """Record a transfer basis (SCC, DPF, IDTA, consent, ...) with its evidence."""
    signed_date = iso_date(signed, "--signed")
    assert signed_date is not None
    basis = Basis(
        type=basis_type,
        ref=ref,
        signed=signed_date,
        expires=iso_date(expires, "--expires"),
        module=module,
        tia_ref=tia_ref,
        tia_date=iso_date(tia_date, "--tia-date"),
        consent_ref=consent_ref,
        filing=filing,
        added_at=now_stamp(),
    )
    with _store(ctx).editing_registry(passphrase()) as registry:
        updated = registry.add_basis(recipient_id, basis, today())
    _emit(ctx, basis.to_json(), f"basis {basis.type} {basis.ref} recorded for {updated.id}")


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    recipient_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why (kept in the registry for the audit trail).")],
) -> None:
    """Revoke a recipient: no transfer or encryption to it from now on."""
    with _store(ctx).editing_registry(passphrase()) as registry:
        revoked = registry.revoke(recipient_id, reason, now_stamp())
    _emit(ctx, revoked.to_json(), f"recipient {revoked.id} revoked")


def _status(r: Recipient) -> str:
    if r.revoked_at:
        return "revoked"
    day = today()
    if r.valid_until is not None and day > r.valid_until:
        return "expired"
    return "active"


@keys_app.command("list")
def list_recipients(ctx: typer.Context) -> None:
    """List recipients with their key fingerprints, destinations and bases."""
    recipients = _store(ctx).registry().all()
    if settings(ctx).json:
        out.print_json(
            json.dumps([r.to_json() | {"status": _status(r)} for r in recipients], ensure_ascii=False)
        )
        return
    table = Table("id", "name", "country", "status", "fingerprint", "valid until", "bases", "destination")
    for r in recipients:
        table.add_row(
            r.id,
            r.name,
            r.country,
            _status(r),
            r.fingerprint[:23] + "…",
            str(r.valid_until or "-"),
            ", ".join(b.type for b in r.bases) or "-",
            r.destination,
        )
    out.print(table)


@keys_app.command("show")
def show(ctx: typer.Context, recipient_id: Annotated[str, typer.Argument(metavar="ID|lab")]) -> None:
    """Show one recipient in full, or `lab` for the lab's own keys."""
    store = _store(ctx)
    if recipient_id == "lab":
        cfg = store.config()
        data: dict[str, Any] = {
            "home": str(store.home),
            "lab_public_key": str(store.lab_pub_path),
            "lab_keys": [
                {"fingerprint": k.fingerprint, "status": k.status, "created_at": k.created_at}
                for k in cfg.lab_keys
            ],
            "signing_fingerprint": cfg.signing_fingerprint,
            "vault_key_wrapping": cfg.wrap_mode,
            "kms_key_id": cfg.kms.key_id if cfg.kms else None,
            "lab_jurisdiction": cfg.jurisdiction,
        }
    else:
        recipient = store.registry().get(recipient_id)
        data = recipient.to_json() | {"status": _status(recipient)}
        data.pop("public_key")
    if settings(ctx).json:
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    for key, value in data.items():
        if isinstance(value, list):
            listed = json.dumps(value, ensure_ascii=False) if value else "-"
            out.print(f"{key}: {listed}", markup=False)
        else:
            out.print(f"{key}: {value if value not in (None, '') else '-'}", markup=False)
