"""De-identification: manifests, VCF/BCF, BAM/CRAM and FASTQ; re-identification tests.

The public surface is this module's __all__; `deid.synth` (synthetic identified cohorts) is a
public subpackage with its own __all__, kept apart so that importing deid stays cheap.
"""

from __future__ import annotations

from deid.consent import Exclusion
from deid.errors import DeidError, MalformedInput, OutputExists
from deid.manifest import read_manifest
from deid.policy import (
    BUILTIN,
    FieldAction,
    GenomicRules,
    Policy,
    Profile,
    builtin_text,
    load_policy,
    parse_policy,
    policy_summary,
)
from deid.release import ReleaseResult, deidentify

__all__ = [
    "BUILTIN",
    "DeidError",
    "Exclusion",
    "FieldAction",
    "GenomicRules",
    "MalformedInput",
    "OutputExists",
    "Policy",
    "Profile",
    "ReleaseResult",
    "builtin_text",
    "deidentify",
    "load_policy",
    "parse_policy",
    "policy_summary",
    "read_manifest",
]
