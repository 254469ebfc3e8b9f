"""De-identification: manifests, VCF/BCF, BAM/CRAM and FASTQ; re-identification tests.

The public surface is this module's __all__; `deid.synth` (synthetic identified cohorts) is a
public subpackage with its own __all__, kept apart so that importing deid stays cheap.
"""

from __future__ import annotations

from deid.errors import DeidError, MalformedInput, OutputExists

__all__ = ["DeidError", "MalformedInput", "OutputExists"]
