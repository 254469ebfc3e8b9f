"""Write the cohort's joint-called VCF the way a lab's pipeline leaves it: identifiers included.

The header carries what real callers and mergers write and de-identification must remove:
##fileDate, ##source, a ##commandline and a ##bcftools_mergeCommand whose input paths name the
patients, and ##SAMPLE lines with names and birth dates. Rows are built with numpy lookup tables,
one site at a time, so memory stays flat in the number of sites and Python does no per-genotype
work. The text is BGZF-compressed by htslib and tabix-indexed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pysam

from deid.synth.genome import Contig, HaplotypeLayout, Site
from deid.synth.people import Person

_DP_MIN, _DP_MAX = 8, 60
# genotype codes: 0 hom-ref, 1 het, 2 hom-alt (diploid); 3 ref, 4 alt (haploid); 5 not carried
_GT = ("0/0", "0/1", "1/1", "0", "1", ".")


def _format_table() -> npt.NDArray[np.object_]:
    cells = []
    for code, gt in enumerate(_GT):
        for dp in range(_DP_MIN, _DP_MAX + 1):
            if code == 5:
                cells.append(".")
                continue
            gq = min(99, int(dp * (1.6 if code == 1 else 2.5)))
            cells.append(f"{gt}:{gq}:{dp}")
    return np.array(cells, dtype=object)


_CELLS = _format_table()
_WIDTH = _DP_MAX - _DP_MIN + 1


def patient_path(person: Person) -> str:
    """The directory a lab server keeps this participant's files in (names the patient)."""
    who = person.name_in_path or "patient"
    return f"/data/clinical/patients/{who}_MRN{person.mrn}"


def vcf_header(people: Sequence[Person], contigs: Sequence[Contig], file_date: dt.date) -> str:
    """The identified header, from ##fileformat to the #CHROM line."""
    inputs = " ".join(f"{patient_path(p)}/{p.sample_id}.g.vcf.gz" for p in people)
    lines = [
        "##fileformat=VCFv4.2",
        f"##fileDate={file_date.strftime('%Y%m%d')}",
        "##source=GATK GenotypeGVCFs 4.5.0.0",
        "##reference=file:///data/reference/GRCh38_full_analysis_set_plus_decoy_hla.fa",
        '##commandline="gatk GenotypeGVCFs -R /data/reference/GRCh38_full_analysis_set_plus_decoy_hla.fa'
        f' -V gendb:///data/clinical/cohorts/joint_{file_date.year}/genomicsdb -O cohort.vcf.gz"',
        "##bcftools_mergeVersion=1.21+htslib-1.21",
        f"##bcftools_mergeCommand=merge -Oz -o cohort.vcf.gz {inputs}; "
        f"Date={file_date.strftime('%a %b %d %H:%M:%S %Y')}",
    ]
    lines += [f"##contig=<ID={c.name},length={c.length},assembly=GRCh38>" for c in contigs]
    lines += [
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##FILTER=<ID=LowQual,Description="Low quality">',
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes">',
        '##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Combined depth across samples">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
    ]
    lines += [
        f'##SAMPLE=<ID={p.sample_id},Individual="{p.full_name}",DOB={p.date_of_birth.isoformat()},'
        f'MRN={p.mrn},Description="{p.diagnosis}">'
        for p in people
    ]
    columns = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]
    lines.append("\t".join(columns + [p.sample_id for p in people]))
    return "\n".join(lines) + "\n"


def genotype_codes(site: Site, layout: HaplotypeLayout) -> npt.NDArray[np.int64]:
    """Each person's genotype code at a site (see _GT), vectorised over people."""
    alleles = site.alleles.astype(np.int64)
    first = alleles[np.minimum(layout.start, len(alleles) - 1)]
    second = alleles[np.minimum(layout.start + 1, len(alleles) - 1)]
    return np.select(
        [layout.count == 2, layout.count == 1],
        [first + second, 3 + first],
        default=5,
    )


def site_row(contig: Contig, site: Site, layout: HaplotypeLayout, rng: np.random.Generator) -> str:
    """One VCF data line for a site."""
    codes = genotype_codes(site, layout)
    depth = np.clip(rng.poisson(30, size=len(codes)), _DP_MIN, _DP_MAX)
    called = layout.count > 0
    ac = int(site.alleles.sum())
    an = int(layout.count.sum())
    qual = float(rng.gamma(2.0, 400.0)) + 10.0
    info = f"AC={ac};AN={an};AF={ac / an:.4g};DP={int(depth[called].sum())}"
    fields = [
        contig.name,
        str(site.position + 1),
        ".",
        site.ref,
        site.alt,
        f"{qual:.2f}",
        "PASS" if qual >= 50 else "LowQual",
        info,
        "GT:GQ:DP",
    ]
    cells = _CELLS[codes * _WIDTH + (depth - _DP_MIN)]
    return "\t".join(fields) + "\t" + "\t".join(cells.tolist()) + "\n"


def write_vcf(
    path: Path,
    header: str,
    rows: Iterable[str],
) -> None:
    """BGZF-compress header and rows to path and build its tabix index."""
    with pysam.BGZFile(str(path), "wb", index=None) as out:
        out.write(header.encode("utf-8"))
        for row in rows:
            out.write(row.encode("utf-8"))
    pysam.tabix_index(str(path), preset="vcf", force=True)
