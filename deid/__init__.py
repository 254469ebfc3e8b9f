"""De-identification: manifests, VCF/BCF, BAM/CRAM and FASTQ; re-identification tests.

The public surface is this module's __all__, loaded lazily (see _LAZY) so that importing deid,
or just its error types, does not load polars. `deid.synth` (synthetic identified cohorts) is a
public subpackage with its own __all__.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deid.errors import DeidError, MalformedInput, OutputExists

if TYPE_CHECKING:
    from deid.consent import Exclusion
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

# name -> module: loaded on first use, so `import deid` (and its error types) does not load polars
_LAZY = {
    "Exclusion": "deid.consent",
    "read_manifest": "deid.manifest",
    **dict.fromkeys(
        ("BUILTIN", "FieldAction", "GenomicRules", "Policy", "Profile", "builtin_text", "load_policy",
         "parse_policy", "policy_summary"),
        "deid.policy",
    ),
    "ReleaseResult": "deid.release",
    "deidentify": "deid.release",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deid' has no attribute {name!r}")


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
