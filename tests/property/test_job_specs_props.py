"""Property: a job written by deid.genomic.job_specs reads back as the same job, whatever its names."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from deid.genomic import Job, job_specs, read_job_spec
from deid.policy import load_policy

RULES = load_policy("cgipa").genomic
# sample names and paths as labs write them: any printable text, accents, spaces, quotes, emoji
_names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24)
_pairs = st.lists(st.tuples(_names, _names), max_size=4).map(tuple)


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    """Any job deid.genomic.plan_files could make, with arbitrary names."""
    kind = draw(st.sampled_from(["vcf", "summary", "alignment", "fastq"]))
    sources = tuple(Path("/lab", n) for n in draw(st.lists(_names, min_size=1, max_size=2)))
    outputs = tuple(draw(st.lists(_names, min_size=1, max_size=2)))
    return Job(kind, sources, outputs, draw(_pairs), draw(_pairs))


@settings(max_examples=60, deadline=None)
@given(st.lists(jobs(), min_size=1, max_size=5), st.integers(1, 8), st.booleans())
def test_every_job_reads_back_unchanged(planned: list[Job], threads: int, rewrite: bool) -> None:
    """Each (folder, index) gives back its job, the work folder, the rules and threads exactly."""
    rules = dataclasses.replace(RULES, rewrite_read_names=rewrite, drop_contigs=("chrY", "Ünïcode"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / ".rel.partial-x"
        work.mkdir()
        with job_specs(planned, work, rules, threads=threads) as folder:
            back = [read_job_spec(folder, i) for i in range(len(planned))]
    assert [(job, work, rules, threads) for job in planned] == back
