"""De-identification: manifests, VCF/BCF, BAM/CRAM and FASTQ; re-identification tests.

The public surface is this module's __all__, loaded lazily (see _LAZY) so that importing deid,
or just its error types, does not load polars. `deid.synth` (synthetic identified cohorts) is a
public subpackage with its own __all__.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deid.errors import DeidError, MalformedInput, OutputExists

if TYPE_CHECKING:
    from deid.alignment import AlignmentStats, deidentify_alignment
    from deid.consent import Exclusion
    from deid.fastq import FastqStats, deidentify_fastq
    from deid.genomic import (
        Job,
        JobRunner,
        job_specs,
        job_totals,
        plan_files,
        read_job_spec,
        run_job,
        run_job_spec,
        run_jobs,
    )
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
    from deid.reid.runner import AssessmentResult, assess
    from deid.release import ReleaseResult, deidentify
    from deid.retention import RetentionPolicy, parse_retention
    from deid.vcf import VcfStats, allele_frequencies, deidentify_vcf

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
    **dict.fromkeys(("AlignmentStats", "deidentify_alignment"), "deid.alignment"),
    **dict.fromkeys(("AssessmentResult", "assess"), "deid.reid.runner"),
    **dict.fromkeys(("FastqStats", "deidentify_fastq"), "deid.fastq"),
    **dict.fromkeys(("Job", "JobRunner", "job_specs", "job_totals", "plan_files", "read_job_spec", "run_job",
                     "run_job_spec", "run_jobs"), "deid.genomic"),
    **dict.fromkeys(("RetentionPolicy", "parse_retention"), "deid.retention"),
    **dict.fromkeys(("VcfStats", "allele_frequencies", "deidentify_vcf"), "deid.vcf"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deid' has no attribute {name!r}")


__all__ = [
    "BUILTIN",
    "AlignmentStats",
    "AssessmentResult",
    "DeidError",
    "Exclusion",
    "FastqStats",
    "FieldAction",
    "GenomicRules",
    "Job",
    "JobRunner",
    "MalformedInput",
    "OutputExists",
    "Policy",
    "Profile",
    "ReleaseResult",
    "RetentionPolicy",
    "VcfStats",
    "allele_frequencies",
    "assess",
    "builtin_text",
    "deidentify",
    "deidentify_alignment",
    "deidentify_fastq",
    "deidentify_vcf",
    "job_specs",
    "job_totals",
    "load_policy",
    "parse_policy",
    "parse_retention",
    "plan_files",
    "policy_summary",
    "read_job_spec",
    "read_manifest",
    "run_job",
    "run_job_spec",
    "run_jobs",
]
