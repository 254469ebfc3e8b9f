"""Policies: built-in profiles, strict parsing, the profiles' floors, unknown manifest columns."""

from __future__ import annotations

import pytest

from deid import MalformedInput
from deid.policy import BUILTIN, FieldAction, Profile, builtin_text, load_policy, parse_policy


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_profiles_load_and_round_trip(name: str) -> None:
    """Each built-in profile parses; its printed TOML parses to the same policy (same digest)."""
    policy = load_policy(name)
    assert Profile(name) == policy.profile
    assert policy.digest == parse_policy(builtin_text(name), "copy.toml").digest
    assert policy.digest.startswith("sha256:")


def test_every_canonical_column_has_an_action() -> None:
    """The built-in profiles name every column of SPEC.md 2.1 (nothing passes through by default)."""
    from deid.synth import MANIFEST_COLUMNS

    for name in BUILTIN:
        assert [] == [c for c in MANIFEST_COLUMNS if c not in load_policy(name).columns]


def test_cgipa_actions_for_identifiers() -> None:
    """cgipa drops direct identifiers, pseudonymises ids, top-codes birth dates and keeps the region."""
    columns = load_policy("cgipa").columns
    assert (FieldAction.DROP, FieldAction.PSEUDONYMISE, FieldAction.AGE_TOP_CODE, FieldAction.ZIP3) == (
        columns["ssn"],
        columns["sample_id"],
        columns["date_of_birth"],
        columns["zip"],
    )
    assert (FieldAction.KEEP, FieldAction.INTERNAL) == (
        columns["residence_region"],
        columns["consent_transfer"],
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'full_name = "drop"',
            'full_name = "keep"',
            "columns.full_name = keep is below the cgipa profile's floor",
        ),
        ('date_of_birth = "age-top-code"', 'date_of_birth = "generalise-year"', "columns.date_of_birth"),
        ('collection_date = "generalise-year"', 'collection_date = "keep"', "columns.collection_date = keep"),
        ('zip = "zip3"', 'zip = "keep"', "columns.zip = keep"),
        ('zip = "zip3"', 'zip = "shred"', "columns.zip: Input should be"),
        ('sex = "keep"', 'sex = "zip3"', "columns.sex: zip3 applies only to zip"),
        ('sex = "keep"', 'sex = "pseudonymise"', "pseudonymise applies only to sample_id, subject_id"),
        ("[genomic]", "[genomic]\nfoo = 1", "genomic.foo: Extra inputs are not permitted"),
        ("[policy]", "[policy]\ncolour = 'red'", "policy.colour: Extra inputs are not permitted"),
        ('vault_domain = "default"', 'vault_domain = "Bad Domain"', "policy.vault_domain"),
        ("rewrite_read_names = true", "rewrite_read_names = false", "rewrite_read_names = false is below"),
        (
            'aux_tags_keep = ["RG"',
            'aux_tags_keep = ["*", "RG"',
            "genomic.aux_tags_keep = .* is below the cgipa floor",
        ),
        ('info_keep = ["AC"', 'info_keep = ["*", "AC"', "genomic.info_keep"),
        ('sam_header_keep = ["HD", "SQ", "RG"]', 'sam_header_keep = ["HD", "RG"]', "must list SQ"),
        ("[aliases]", '[aliases]\npatient = "fullname"', "aliases.patient: fullname is not a column"),
    ],
)
def test_bad_policies_are_refused(old: str, new: str, message: str) -> None:
    """A policy below its floor, with an unknown key or a misplaced action, is refused naming the key."""
    text = builtin_text("cgipa")
    assert old in text
    with pytest.raises(MalformedInput, match=message.replace("(", r"\(")):
        parse_policy(text.replace(old, new, 1), "mine.toml")


def test_gdpr_profile_may_keep_dates_as_years() -> None:
    """gdpr-pseudonymised keeps the birth year (no top-coding) but still drops direct identifiers."""
    policy = load_policy("gdpr-pseudonymised")
    assert (FieldAction.GENERALISE_YEAR, FieldAction.DROP) == (
        policy.columns["date_of_birth"],
        policy.columns["full_name"],
    )


def test_unknown_manifest_column_is_refused_with_the_fix() -> None:
    """A manifest column the policy does not name is refused, with the TOML line that fixes it."""
    policy = load_policy("cgipa")
    with pytest.raises(
        MalformedInput,
        match='column favourite_colour has no action in policy cgipa; add `favourite_colour = "drop"`',
    ):
        policy.canonical_names(["sample_id", "favourite_colour"], "samples.csv")


def test_aliases_map_local_names() -> None:
    """An alias maps a lab's own column name onto a canonical one."""
    text = builtin_text("cgipa").replace("[aliases]", '[aliases]\npatient_name = "full_name"')
    policy = parse_policy(text, "mine.toml")
    assert {"patient_name": "full_name", "sample_id": "sample_id"} == policy.canonical_names(
        ["patient_name", "sample_id"], "m.csv"
    )


def test_missing_policy_file_names_the_builtins() -> None:
    """A policy argument that is neither a file nor a profile lists the profiles."""
    with pytest.raises(MalformedInput, match="safe-harbor, cgipa, gdpr-pseudonymised"):
        load_policy("no-such-policy.toml")
