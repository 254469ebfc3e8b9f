"""The policy's [retention] section: defaults, parsing, refusals, when an item falls due, input paths."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deid import MalformedInput
from deid.policy import BUILTIN, builtin_text, load_policy, parse_policy
from deid.retention import KEYS, MAX_DAYS, NEVER, RetentionPolicy, classes, input_paths, parse_retention

WRITTEN = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_defaults_keep_inputs_and_the_log_for_ever() -> None:
    """Without a [retention] section: inputs and log never removed, releases a year, outbox 90 days,
    results six years."""
    assert {
        "staging_days": NEVER,
        "release_days": 365,
        "outbox_days": 90,
        "assessment_days": 2190,
        "log_days": NEVER,
    } == parse_retention({}, "p.toml").as_dict()


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_profiles_print_the_defaults(name: str) -> None:
    """Each built-in profile spells out [retention] with the defaults, so `policy show` prints them."""
    section = tomllib.loads(builtin_text(name))["retention"]
    assert RetentionPolicy().as_dict() == section
    assert RetentionPolicy() == load_policy(name).retention


def test_a_policy_file_sets_periods_and_keeps_its_digest() -> None:
    """A [retention] section is read into Policy.retention; the digest (the release rules) is unchanged."""
    text = (
        builtin_text("cgipa")
        .replace('staging_days = "never"', "staging_days = 0")
        .replace("release_days = 365", "release_days = 30")
    )
    policy = parse_policy(text, "p.toml")
    assert (0, 30, load_policy("cgipa").digest) == (
        policy.retention.staging_days,
        policy.retention.release_days,
        policy.digest,
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("staging_dayz = 3", "retention.staging_dayz is not a retention key; use staging_days, release_days"),
        ("release_days = -1", "retention.release_days is negative; give whole days (0 = at the next"),
        ("outbox_days = 1.5", 'retention.outbox_days: give whole days (0 = at the next retention run) or "never"'),
        ("outbox_days = true", "retention.outbox_days: give whole days"),
        ('assessment_days = "forever"', "retention.assessment_days: give whole days"),
        ("release_days = 36501", 'retention.release_days is over 36500 days (a century); write "never"'),
        ("log_days = 30", "retention.log_days: the transfer log is kept for ever"),
        ("log_days = 0", "it is a signed hash chain, so removing entries breaks verification"),
    ],
)  # fmt: skip
def test_a_bad_section_is_refused_naming_the_key(section: str, message: str) -> None:
    """An unknown key, a negative or non-whole number, or any log period but "never": one line naming it."""
    text = builtin_text("cgipa").split("[retention]")[0] + f"[retention]\n{section}\n"
    with pytest.raises(MalformedInput) as caught:
        parse_policy(text, "p.toml")
    assert caught.value.path == "p.toml"
    assert message in caught.value.detail
    assert 1 == len(str(caught.value).splitlines())


def test_log_days_never_is_accepted() -> None:
    """log_days = "never" is the one value the log takes."""
    assert parse_retention({"log_days": "never"}, "p.toml").log_days is None


@given(
    days=st.integers(min_value=0, max_value=MAX_DAYS),
    age=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=30_000)),
    holding=st.sampled_from([c for c in classes() if c != "log"]),
)
def test_an_item_is_due_exactly_when_its_days_have_passed(days: int, age: dt.timedelta, holding: str) -> None:
    """due_at is written + N days: an item of that age is due iff age >= N days (0: at once)."""
    policy = parse_retention({f"{holding}_days": days}, "p.toml")
    due_at = policy.due_at(holding, WRITTEN)
    assert due_at is not None
    assert (age >= dt.timedelta(days=days)) == (due_at <= WRITTEN + age)


@given(holding=st.sampled_from(classes()), age=st.integers(min_value=0, max_value=700_000))
def test_never_is_never_due(holding: str, age: int) -> None:
    """A "never" period has no due date, however old the item."""
    policy = parse_retention(dict.fromkeys(KEYS, NEVER), "p.toml")
    assert policy.due_at(holding, WRITTEN - dt.timedelta(days=age)) is None


def test_input_paths_reads_relative_paths_from_the_manifest_folder() -> None:
    """vcf, alignment and every fastq of a cell; relative to the manifest's folder; sorted, once each."""
    base = Path("/staging/batch")
    rows: list[dict[str, object]] = [
        {"vcf": "genotypes/joint.vcf.gz", "alignment": "/data/a.bam", "fastq": "r1.fq.gz; r2.fq.gz"},
        {"vcf": "genotypes/joint.vcf.gz", "alignment": None, "fastq": ""},
        {"sample_id": "S1"},
    ]
    assert (
        Path("/data/a.bam"),
        Path("/staging/batch/genotypes/joint.vcf.gz"),
        Path("/staging/batch/r1.fq.gz"),
        Path("/staging/batch/r2.fq.gz"),
    ) == input_paths(rows, base)
