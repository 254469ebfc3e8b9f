"""The recipient registry: partner institutions, their keys, destinations and transfer bases.

Stored as recipients.json in the keystore, signed with the lab's signing key (keys/signed_json.py),
so an edit outside genegate is detected on the next read. The registry records what the lab
declares and the evidence it holds; whether that evidence suffices for a given transfer is the
gate's decision (transfer/gate.py), not the registry's.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NewType
from urllib.parse import urlparse

from keys.errors import KeyFormatError, KeyStoreError, RecipientUnusable, UnknownRecipient
from keys.keyfiles import PublicKey, parse_public_key
from keys.signed_json import read_signed, write_signed
from keys.signing import SigningKey, VerifyKey

RecipientId = NewType("RecipientId", str)
REGISTRY_FORMAT = 1
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DUO = re.compile(r"^DUO:\d{7}$")


class BasisType(enum.StrEnum):
    """Transfer bases a recipient can hold (SPEC.md 5)."""

    SCC_EU_2021 = "scc_eu_2021"
    DPF = "dpf"
    IDTA = "idta"
    UK_ADDENDUM = "uk_addendum"
    CH_SCC = "ch_scc"
    BCR = "bcr"
    GDPR_49_1_A = "gdpr_49_1_a"
    APPI_CONSENT = "appi_consent"
    APPI_EQUIVALENT = "appi_equivalent"
    PIPL_CONTRACT = "pipl_contract"
    HGR_FILING = "hgr_filing"


# Fields without which a basis of that type is not even the named instrument.
_DEFINING_FIELDS: dict[BasisType, tuple[str, ...]] = {
    BasisType.SCC_EU_2021: ("module",),
    BasisType.GDPR_49_1_A: ("consent_ref",),
    BasisType.APPI_CONSENT: ("consent_ref",),
    BasisType.PIPL_CONTRACT: ("consent_ref",),
    BasisType.HGR_FILING: ("filing",),
}


@dataclass(frozen=True, slots=True)
class Basis:
    """A transfer basis with its evidence references (documents are referenced, not stored)."""

    type: BasisType
    ref: str
    signed: dt.date
    expires: dt.date | None = None
    module: int | None = None
    tia_ref: str | None = None
    tia_date: dt.date | None = None
    consent_ref: str | None = None
    filing: str | None = None
    added_at: str = ""

    def validate(self, today: dt.date) -> None:
        """Refuse evidence that is self-contradictory or not the named instrument."""
        missing = [f for f in _DEFINING_FIELDS.get(self.type, ()) if getattr(self, f) in (None, "")]
        if missing:
            flags = ", ".join("--" + f.replace("_", "-") for f in missing)
            raise KeyStoreError(f"a {self.type} basis needs {flags}")
        if self.module is not None and not 1 <= self.module <= 4:
            raise KeyStoreError(f"--module {self.module}: SCC 2021 modules are 1, 2, 3 or 4")
        if self.signed > today:
            raise KeyStoreError(f"--signed {self.signed}: a basis cannot be signed in the future")
        if self.expires is not None and self.expires <= self.signed:
            raise KeyStoreError(f"--expires {self.expires} is not after --signed {self.signed}")
        if (self.tia_ref is None) != (self.tia_date is None):
            raise KeyStoreError("a transfer impact assessment needs both --tia-ref and --tia-date")
        if self.tia_date is not None and self.tia_date > today:
            raise KeyStoreError(f"--tia-date {self.tia_date} is in the future")

    def to_json(self) -> dict[str, Any]:
        """Registry form."""
        return {
            "type": self.type,
            "ref": self.ref,
            "signed": self.signed.isoformat(),
            "expires": _iso(self.expires),
            "module": self.module,
            "tia_ref": self.tia_ref,
            "tia_date": _iso(self.tia_date),
            "consent_ref": self.consent_ref,
            "filing": self.filing,
            "added_at": self.added_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Basis:
        """Parse the registry form."""
        return cls(
            type=BasisType(d["type"]),
            ref=d["ref"],
            signed=dt.date.fromisoformat(d["signed"]),
            expires=_date(d.get("expires")),
            module=d.get("module"),
            tia_ref=d.get("tia_ref"),
            tia_date=_date(d.get("tia_date")),
            consent_ref=d.get("consent_ref"),
            filing=d.get("filing"),
            added_at=d.get("added_at", ""),
        )


@dataclass(frozen=True, slots=True)
class Recipient:
    """A partner institution that may receive releases."""

    id: RecipientId
    name: str
    country: str
    public_key: PublicKey
    key_format: str
    destination: str
    region: str | None
    valid_from: dt.date
    valid_until: dt.date | None
    purposes: tuple[str, ...]
    contract_ref: str | None
    contract_signed: dt.date | None
    bases: tuple[Basis, ...] = ()
    revoked_at: str | None = None
    revoked_reason: str | None = None
    added_at: str = ""

    @property
    def fingerprint(self) -> str:
        """SHA256:<hex> of the recipient's X25519 public key."""
        return self.public_key.fingerprint

    def usable(self, today: dt.date) -> None:
        """Raise RecipientUnusable unless the recipient may receive data today."""
        if self.revoked_at:
            raise RecipientUnusable(f"recipient {self.id} was revoked on {self.revoked_at[:10]}")
        if today < self.valid_from:
            raise RecipientUnusable(f"recipient {self.id}'s key is valid only from {self.valid_from}")
        if self.valid_until is not None and today > self.valid_until:
            raise RecipientUnusable(
                f"recipient {self.id}'s key expired on {self.valid_until}; "
                "register the partner's new key with `genegate keys add-recipient`"
            )

    def to_json(self) -> dict[str, Any]:
        """Registry form (the public key as its Crypt4GH PEM)."""
        return {
            "id": self.id,
            "name": self.name,
            "country": self.country,
            "public_key": self.public_key.to_pem(),
            "key_format": self.key_format,
            "fingerprint": self.fingerprint,
            "destination": self.destination,
            "region": self.region,
            "valid_from": self.valid_from.isoformat(),
            "valid_until": _iso(self.valid_until),
            "purposes": list(self.purposes),
            "contract_ref": self.contract_ref,
            "contract_signed": _iso(self.contract_signed),
            "bases": [b.to_json() for b in self.bases],
            "revoked_at": self.revoked_at,
            "revoked_reason": self.revoked_reason,
            "added_at": self.added_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str) -> Recipient:
        """Parse the registry form."""
        try:
            return cls(
                id=RecipientId(d["id"]),
                name=d["name"],
                country=d["country"],
                public_key=parse_public_key(d["public_key"], f"{source} ({d['id']})"),
                key_format=d["key_format"],
                destination=d["destination"],
                region=d.get("region"),
                valid_from=dt.date.fromisoformat(d["valid_from"]),
                valid_until=_date(d.get("valid_until")),
                purposes=tuple(d.get("purposes", ())),
                contract_ref=d.get("contract_ref"),
                contract_signed=_date(d.get("contract_signed")),
                bases=tuple(Basis.from_json(b) for b in d.get("bases", ())),
                revoked_at=d.get("revoked_at"),
                revoked_reason=d.get("revoked_reason"),
                added_at=d.get("added_at", ""),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyFormatError(source, f"a recipient entry is incomplete ({type(exc).__name__})") from exc


def new_recipient(
    recipient_id: str,
    *,
    name: str,
    country: str,
    public_key_text: str,
    key_source: str,
    destination: str,
    region: str | None,
    valid_until: dt.date | None,
    purposes: tuple[str, ...],
    contract_ref: str | None,
    contract_signed: dt.date | None,
    today: dt.date,
    added_at: str,
) -> Recipient:
    """Validate the operator's declaration and build a Recipient."""
    if not _ID.match(recipient_id):
        raise KeyStoreError(
            f"recipient id {recipient_id!r}: use 2-63 lowercase letters, digits and dashes "
            "(e.g. ch-zurich-genomics)"
        )
    country = country.upper()
    if not _COUNTRY.match(country):
        raise KeyStoreError(f"--country {country!r}: give an ISO 3166-1 alpha-2 code such as CH, JP, US")
    bad = [p for p in purposes if not _DUO.match(p)]
    if bad:
        raise KeyStoreError(f"--purpose {bad[0]!r}: give a DUO code such as DUO:0000006")
    _check_destination(destination)
    if valid_until is not None and valid_until < today:
        raise KeyStoreError(f"--valid-until {valid_until} is already past")
    if (contract_ref is None) != (contract_signed is None):
        raise KeyStoreError("a no-reidentification contract needs both --contract and --contract-signed")
    if contract_signed is not None and contract_signed > today:
        raise KeyStoreError(f"--contract-signed {contract_signed} is in the future")
    key = parse_public_key(public_key_text, key_source)
    key_format = "ssh-ed25519" if public_key_text.lstrip().startswith("ssh-ed25519") else "crypt4gh"
    return Recipient(
        id=RecipientId(recipient_id),
        name=name.strip(),
        country=country,
        public_key=key,
        key_format=key_format,
        destination=destination,
        region=region,
        valid_from=today,
        valid_until=valid_until,
        purposes=purposes,
        contract_ref=contract_ref,
        contract_signed=contract_signed,
        added_at=added_at,
    )


def _check_destination(uri: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and parsed.path.startswith("/"):
        return
    if parsed.scheme == "s3" and parsed.netloc:
        return
    raise KeyStoreError(f"--destination {uri!r}: give file:///absolute/outbox or s3://bucket/prefix")


class Registry:
    """The signed recipient registry of a keystore."""

    def __init__(self, recipients: dict[RecipientId, Recipient]) -> None:
        self._by_id = dict(recipients)

    @classmethod
    def load(cls, path: Path, verify_key: VerifyKey) -> Registry:
        """Read and verify recipients.json; an absent file is an empty registry."""
        if not path.exists():
            return cls({})
        doc = read_signed(path, verify_key, "recipient registry")
        items = [Recipient.from_json(d, str(path)) for d in doc.get("recipients", [])]
        return cls({r.id: r for r in items})

    def save(self, path: Path, signer: SigningKey) -> None:
        """Sign and write atomically."""
        doc = {"format": REGISTRY_FORMAT, "recipients": [r.to_json() for r in self.all()]}
        write_signed(path, doc, signer)

    def all(self) -> list[Recipient]:
        """Every recipient, revoked ones included, by id."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    def get(self, recipient_id: str) -> Recipient:
        """One recipient, or UnknownRecipient naming the fix."""
        try:
            return self._by_id[RecipientId(recipient_id)]
        except KeyError:
            raise UnknownRecipient(
                f"no recipient {recipient_id!r}; `genegate keys list` shows the registered ones"
            ) from None

    def add(self, recipient: Recipient) -> None:
        """Register a new recipient; an id is never reused, even after revocation."""
        if recipient.id in self._by_id:
            raise KeyStoreError(
                f"recipient {recipient.id} already exists; revoke it and register the new key under a new id"
            )
        self._by_id[recipient.id] = recipient

    def add_basis(self, recipient_id: str, basis: Basis, today: dt.date) -> Recipient:
        """Record a basis for a recipient that is not revoked."""
        current = self.get(recipient_id)
        if current.revoked_at:
            raise RecipientUnusable(f"recipient {recipient_id} is revoked; bases cannot be added")
        basis.validate(today)
        updated = replace(current, bases=(*current.bases, basis))
        self._by_id[current.id] = updated
        return updated

    def revoke(self, recipient_id: str, reason: str, when: str) -> Recipient:
        """Mark a recipient revoked (kept for the audit trail, never deleted)."""
        current = self.get(recipient_id)
        if current.revoked_at:
            raise KeyStoreError(f"recipient {recipient_id} was already revoked on {current.revoked_at[:10]}")
        updated = replace(current, revoked_at=when, revoked_reason=reason)
        self._by_id[current.id] = updated
        return updated


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None
