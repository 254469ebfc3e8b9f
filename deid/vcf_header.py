"""The released VCF header: the policy's allow-list applied to a header's text (pure, no I/O).

Only the line keys in `vcf_header_keep` survive (fileformat, contig, INFO, FORMAT, FILTER, ALT by
default); INFO and FORMAT definitions only for the keys the policy keeps; contig lines only for
contigs not dropped, and only with ID, length and md5 (an assembly or URL attribute can hold a
path); the #CHROM line carries the pseudonyms. Everything else (##source, ##commandline,
##bcftools_*Command, ##SAMPLE, ##PEDIGREE, ##reference, ##fileDate, ...) goes. BCF headers keep
htslib's IDX attributes, which pin each name to the dictionary number the records use, so dropping
a line never renumbers the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deid.policy import GenomicRules

FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO")
_CONTIG_KEEP = ("ID", "length", "md5")


class HeaderError(ValueError):
    """The header text is not a VCF header (the caller names the file)."""


@dataclass(frozen=True, slots=True)
class HeaderLine:
    """One ## line: its key and, for structured lines (<...>), the attributes in order."""

    key: str
    value: str
    attributes: tuple[tuple[str, str], ...] | None

    @property
    def id(self) -> str | None:
        """The ID attribute of a structured line."""
        return dict(self.attributes or ()).get("ID")

    def text(self) -> str:
        """The line as VCF text (without the newline)."""
        if self.attributes is None:
            return f"##{self.key}={self.value}"
        return f"##{self.key}=<{','.join(f'{k}={v}' for k, v in self.attributes)}>"


@dataclass(frozen=True, slots=True)
class VcfHeader:
    """A parsed header: its ## lines and the sample columns."""

    lines: tuple[HeaderLine, ...]
    samples: tuple[str, ...]

    def ids(self, key: str) -> list[str]:
        """IDs of the structured lines with this key, in order."""
        return [line.id for line in self.lines if line.key == key and line.id is not None]


def _attributes(body: str) -> tuple[tuple[str, str], ...]:
    """key=value pairs of a <...> body; quoted values may hold commas, = and escaped quotes."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(body)
    while i < n:
        eq = body.find("=", i)
        if eq < 0:
            raise HeaderError("structured header line has an attribute without '='")
        key = body[i:eq]
        j = eq + 1
        if j < n and body[j] == '"':
            j += 1
            while j < n and body[j] != '"':
                j += 2 if body[j] == "\\" else 1
            if j >= n:
                raise HeaderError("structured header line has an unterminated quoted value")
            j += 1
        else:
            while j < n and body[j] != ",":
                j += 1
        pairs.append((key, body[eq + 1 : j]))
        i = j + 1
    return tuple(pairs)


def parse_header(text: str) -> VcfHeader:
    """Parse header text from ##fileformat to the #CHROM line."""
    lines: list[HeaderLine] = []
    samples: tuple[str, ...] | None = None
    for raw in text.rstrip("\n").split("\n"):
        line = raw.rstrip("\r")
        if line.startswith("##"):
            key, sep, value = line[2:].partition("=")
            if not sep:
                raise HeaderError("a ## header line has no '='")
            structured = value.startswith("<") and value.endswith(">")
            lines.append(HeaderLine(key, value, _attributes(value[1:-1]) if structured else None))
        elif line.startswith("#CHROM"):
            columns = line.split("\t")
            if tuple(columns[:8]) != FIXED_COLUMNS:
                raise HeaderError("the #CHROM line does not have the eight fixed VCF columns")
            samples = tuple(columns[9:])
        else:
            raise HeaderError("a header line does not start with # (header and records out of order)")
    if not lines or lines[0].key != "fileformat" or not lines[0].value.startswith("VCF"):
        raise HeaderError("the first header line is not ##fileformat=VCF...")
    if samples is None:
        raise HeaderError("the header has no #CHROM line")
    return VcfHeader(tuple(lines), samples)


def _kept(line: HeaderLine, rules: GenomicRules, bcf: bool) -> HeaderLine | None:
    allowed = {"INFO": rules.info_keep, "FORMAT": rules.format_keep}.get(line.key)
    if line.key not in rules.vcf_header_keep or (allowed is not None and line.id not in allowed):
        return None
    if line.key == "contig":
        if line.attributes is None or line.id in rules.drop_contigs:
            return None
        keep = (*_CONTIG_KEEP, "IDX") if bcf else _CONTIG_KEEP
        return HeaderLine(line.key, "", tuple((k, v) for k, v in line.attributes if k in keep))
    if not bcf and line.attributes is not None:  # IDX means something only in BCF
        return HeaderLine(line.key, "", tuple((k, v) for k, v in line.attributes if k != "IDX"))
    return line


def released_header(header: VcfHeader, pseudonyms: Sequence[str], rules: GenomicRules, *, bcf: bool) -> str:
    """The header text to release, its sample columns named by pseudonyms (one per sample)."""
    if len(pseudonyms) != len(header.samples):
        raise HeaderError("the number of pseudonyms differs from the number of sample columns")
    lines = [kept.text() for line in header.lines if (kept := _kept(line, rules, bcf)) is not None]
    columns = [*FIXED_COLUMNS, "FORMAT", *pseudonyms] if pseudonyms else list(FIXED_COLUMNS)
    return "\n".join([*lines, "\t".join(columns)]) + "\n"


def removed_keys(header: VcfHeader, rules: GenomicRules) -> list[str]:
    """INFO/FORMAT keys the header declares and the policy does not keep (as INFO/X, FORMAT/Y)."""
    info = [f"INFO/{k}" for k in header.ids("INFO") if k not in rules.info_keep]
    fmt = [f"FORMAT/{k}" for k in header.ids("FORMAT") if k not in rules.format_keep]
    return info + fmt
