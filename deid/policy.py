"""De-identification policies: what happens to each manifest column, and the genomic rules.

A policy is a TOML file or the name of a built-in profile (deid/profiles/*.toml). It is parsed at
the edge with pydantic (unknown keys refused) into a frozen Policy. Each profile also has a floor:
under safe-harbor and cgipa no HIPAA identifier may be kept, dates must become years and birth
dates must be top-coded; a policy that goes below its profile's floor is refused, naming the
column, the rule and the fix. Nothing passes through by default: a manifest column the policy
does not name is refused when the manifest is read (Policy.action_for).

The `[retention]` section (deid/retention.py) says how long the lab keeps what genegate read and
wrote; absent keys take their defaults. It is left out of the digest: the digest names the rules
that shaped a release's content, which a change of retention periods does not touch (each
retention log entry records the period it applied).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deid.errors import MalformedInput
from deid.retention import RetentionPolicy, parse_retention


class FieldAction(enum.StrEnum):
    """What a policy does with one manifest column."""

    DROP = "drop"
    PSEUDONYMISE = "pseudonymise"
    GENERALISE_YEAR = "generalise-year"
    ZIP3 = "zip3"
    AGE_TOP_CODE = "age-top-code"
    SCRUB = "scrub"
    KEEP = "keep"
    INTERNAL = "internal"  # used by genegate (consent, gate, file references), never released


class Profile(enum.StrEnum):
    """The standard a policy claims to meet."""

    SAFE_HARBOR = "safe-harbor"
    CGIPA = "cgipa"
    GDPR_PSEUDONYMISED = "gdpr-pseudonymised"


BUILTIN = tuple(p.value for p in Profile)
_NOT_RELEASED = {FieldAction.DROP, FieldAction.INTERNAL}
DIRECT_IDENTIFIERS = (
    "full_name", "email", "phone", "street_address", "city", "ssn", "mrn",
    "health_plan_id", "device_id", "ip_address", "url",
)  # fmt: skip
PERSON_DATES = ("collection_date", "sequencing_date")
# column -> actions allowed at or above each profile's floor (unlisted columns: any action)
_SAFE_HARBOR_FLOOR: dict[str, set[FieldAction]] = {
    **{c: set(_NOT_RELEASED) for c in DIRECT_IDENTIFIERS},
    "sample_id": {FieldAction.PSEUDONYMISE, *_NOT_RELEASED},
    "subject_id": {FieldAction.PSEUDONYMISE, *_NOT_RELEASED},
    "date_of_birth": {FieldAction.AGE_TOP_CODE, *_NOT_RELEASED},
    "zip": {FieldAction.ZIP3, *_NOT_RELEASED},
    "notes": {FieldAction.SCRUB, *_NOT_RELEASED},
    "sequencing_center": {FieldAction.SCRUB, FieldAction.KEEP, *_NOT_RELEASED},
    **{c: {FieldAction.GENERALISE_YEAR, *_NOT_RELEASED} for c in PERSON_DATES},
}
_FLOORS: dict[Profile, dict[str, set[FieldAction]]] = {
    Profile.SAFE_HARBOR: _SAFE_HARBOR_FLOOR,
    Profile.CGIPA: _SAFE_HARBOR_FLOOR,
    Profile.GDPR_PSEUDONYMISED: {
        **{c: set(_NOT_RELEASED) for c in DIRECT_IDENTIFIERS},
        "sample_id": {FieldAction.PSEUDONYMISE, *_NOT_RELEASED},
        "subject_id": {FieldAction.PSEUDONYMISE, *_NOT_RELEASED},
        "notes": {FieldAction.SCRUB, *_NOT_RELEASED},
    },
}
# actions that only make sense on certain columns
_ACTION_COLUMNS: dict[FieldAction, tuple[str, ...]] = {
    FieldAction.PSEUDONYMISE: ("sample_id", "subject_id"),
    FieldAction.AGE_TOP_CODE: ("date_of_birth",),
    FieldAction.ZIP3: ("zip",),
    FieldAction.GENERALISE_YEAR: ("date_of_birth", *PERSON_DATES, "consent_revoked_at"),
}
_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_DUO = re.compile(r"^DUO:[0-9]{7}$")


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    profile: Profile
    version: str = "1"
    vault_domain: str = "default"
    description: str = ""
    # DUO terms (Data Use Ontology): one permission (NRES 0000004, GRU 0000042, HMB 0000006, DS
    # 0000007) and any modifiers; the gate admits a recipient only for a purpose these allow
    data_use: list[str] = Field(default_factory=lambda: ["DUO:0000042"])


class _Risk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    quasi_identifiers: list[str] = Field(default_factory=list)
    sensitive_attributes: list[str] = Field(default_factory=list)


class _Genomic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    drop_contigs: list[str] = Field(default_factory=lambda: ["chrY", "Y", "chrM", "MT"])
    min_minor_allele_count: int = Field(default=1, ge=0)
    min_minor_allele_frequency: float = Field(default=0.0, ge=0.0, le=0.5)
    info_keep: list[str] = Field(default_factory=lambda: ["AC", "AN", "AF"])
    format_keep: list[str] = Field(default_factory=lambda: ["GT"])
    vcf_header_keep: list[str] = Field(
        default_factory=lambda: ["fileformat", "contig", "INFO", "FORMAT", "FILTER", "ALT"]
    )
    sam_header_keep: list[str] = Field(default_factory=lambda: ["HD", "SQ", "RG"])
    rewrite_read_names: bool = True
    aux_tags_keep: list[str] = Field(default_factory=lambda: ["RG", "NM", "MD", "AS", "XS", "MC", "MQ"])


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    policy: _Meta
    columns: dict[str, FieldAction]
    aliases: dict[str, str] = Field(default_factory=dict)
    risk: _Risk = Field(default_factory=_Risk)
    genomic: _Genomic = Field(default_factory=_Genomic)
    thresholds: dict[str, float] = Field(default_factory=dict)
    retention: dict[str, Any] = Field(default_factory=dict)  # checked by deid.retention.parse_retention


@dataclass(frozen=True, slots=True)
class GenomicRules:
    """What the genomic-file de-identification keeps and drops (SPEC.md 2.2)."""

    drop_contigs: tuple[str, ...]
    min_minor_allele_count: int
    min_minor_allele_frequency: float
    info_keep: tuple[str, ...]
    format_keep: tuple[str, ...]
    vcf_header_keep: tuple[str, ...]
    sam_header_keep: tuple[str, ...]
    rewrite_read_names: bool
    aux_tags_keep: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy."""

    name: str
    profile: Profile
    version: str
    vault_domain: str
    description: str
    columns: Mapping[str, FieldAction]
    aliases: Mapping[str, str]
    quasi_identifiers: tuple[str, ...]
    sensitive_attributes: tuple[str, ...]
    genomic: GenomicRules
    thresholds: Mapping[str, float]
    data_use: tuple[str, ...] = ("DUO:0000042",)
    digest: str = field(default="")
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)

    def columns_with(self, *actions: FieldAction) -> list[str]:
        """Canonical columns whose action is one of actions, in policy order."""
        return [c for c, a in self.columns.items() if a in actions]

    def canonical_names(self, manifest_columns: Iterable[str], source: str) -> dict[str, str]:
        """Map each manifest column to its canonical name; refuse a column the policy does not name."""
        mapping = {}
        for column in manifest_columns:
            canonical = self.aliases.get(column, column)
            if canonical not in self.columns:
                raise MalformedInput(
                    source,
                    f'column {column} has no action in policy {self.name}; add `{column} = "drop"` (or '
                    "another action) under [columns] of a policy file (`genegate policy show NAME` to start)",
                )
            mapping[column] = canonical
        return mapping


def load_policy(spec: str) -> Policy:
    """A built-in profile name or a TOML file path."""
    if spec in BUILTIN:
        return parse_policy(builtin_text(spec), f"built-in profile {spec}")
    path = Path(spec)
    if not path.is_file():
        raise MalformedInput(spec, f"no such policy file, and not a built-in profile ({', '.join(BUILTIN)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedInput(spec, f"cannot read the policy ({type(exc).__name__})") from exc
    return parse_policy(text, spec)


def builtin_text(name: str) -> str:
    """The TOML text of a built-in profile, comments included."""
    if name not in BUILTIN:
        raise MalformedInput(name, f"not a built-in profile; choose one of {', '.join(BUILTIN)}")
    return resources.files("deid.profiles").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def parse_policy(text: str, source: str) -> Policy:
    """Parse and validate policy TOML; one MalformedInput naming the key and the fix on any problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MalformedInput(source, f"not valid TOML ({exc})") from exc
    try:
        parsed = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedInput(source, f"{where}: {first['msg']}") from exc
    policy = _build(parsed, source)
    _check_floor(policy, source)
    return policy


def _build(parsed: _PolicyFile, source: str) -> Policy:
    meta = parsed.policy
    if not _DOMAIN.match(meta.vault_domain):
        raise MalformedInput(source, "policy.vault_domain: use 1-40 lowercase letters, digits and dashes")
    bad_terms = [t for t in meta.data_use if not _DUO.match(t)]
    if bad_terms or not meta.data_use:
        raise MalformedInput(
            source, "policy.data_use: list DUO terms written DUO:0000042 (at least one permission)"
        )
    for alias, canonical in parsed.aliases.items():
        if canonical not in parsed.columns:
            raise MalformedInput(source, f"aliases.{alias}: {canonical} is not a column under [columns]")
    for action, allowed in _ACTION_COLUMNS.items():
        for column in [c for c, a in parsed.columns.items() if a is action and c not in allowed]:
            raise MalformedInput(
                source,
                f"columns.{column}: {action} applies only to {', '.join(allowed)}; choose another action",
            )
    retention = parse_retention(parsed.retention, source)
    g = parsed.genomic
    body = parsed.model_dump(mode="json", exclude={"retention"})
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Policy(
        name=meta.name,
        profile=meta.profile,
        version=meta.version,
        vault_domain=meta.vault_domain,
        description=meta.description,
        columns=dict(parsed.columns),
        aliases=dict(parsed.aliases),
        quasi_identifiers=tuple(parsed.risk.quasi_identifiers),
        sensitive_attributes=tuple(parsed.risk.sensitive_attributes),
        genomic=GenomicRules(
            drop_contigs=tuple(g.drop_contigs),
            min_minor_allele_count=g.min_minor_allele_count,
            min_minor_allele_frequency=g.min_minor_allele_frequency,
            info_keep=tuple(g.info_keep),
            format_keep=tuple(g.format_keep),
            vcf_header_keep=tuple(g.vcf_header_keep),
            sam_header_keep=tuple(g.sam_header_keep),
            rewrite_read_names=g.rewrite_read_names,
            aux_tags_keep=tuple(g.aux_tags_keep),
        ),
        thresholds=dict(parsed.thresholds),
        data_use=tuple(meta.data_use),
        digest=f"sha256:{digest}",
        retention=retention,
    )


def _check_floor(policy: Policy, source: str) -> None:
    floor = _FLOORS[policy.profile]
    for column, allowed in floor.items():
        action = policy.columns.get(column)
        if action is not None and action not in allowed:
            options = " or ".join(sorted(a.value for a in allowed))
            raise MalformedInput(
                source,
                f"columns.{column} = {action} is below the {policy.profile} profile's floor; use {options}",
            )
    if policy.profile is not Profile.GDPR_PSEUDONYMISED and policy.genomic.rewrite_read_names is False:
        raise MalformedInput(
            source,
            f"genomic.rewrite_read_names = false is below the {policy.profile} floor "
            "(read names carry instrument, run and flowcell ids)",
        )
    if policy.profile is not Profile.GDPR_PSEUDONYMISED:
        for key, kept in (
            ("aux_tags_keep", policy.genomic.aux_tags_keep),
            ("info_keep", policy.genomic.info_keep),
            ("format_keep", policy.genomic.format_keep),
        ):
            if "*" in kept:
                raise MalformedInput(
                    source,
                    f'genomic.{key} = "*" (keep everything) is below the {policy.profile} floor; '
                    "list the keys to keep (tags such as BC, CB, UB and free-text keys carry identifiers)",
                )  # fmt: skip
    if "SQ" not in policy.genomic.sam_header_keep:
        raise MalformedInput(
            source, "genomic.sam_header_keep must list SQ: every aligned read points at its @SQ line"
        )


def policy_summary(policy: Policy) -> dict[str, Any]:
    """Facts about the policy for release.json and the CLI (no identifiers in a policy)."""
    return {
        "name": policy.name,
        "profile": policy.profile,
        "version": policy.version,
        "vault_domain": policy.vault_domain,
        "data_use": list(policy.data_use),
        "digest": policy.digest,
    }
