"""Alignment records of a de-identified BAM/CRAM: names, tags, contigs and mates, on SAM text.

Pure core (no pysam, no I/O). The adapter (deid/alignment.py) hands each record over as the SAM
text htslib formats (`AlignedSegment.to_string`) and parses the answer back with htslib
(`AlignedSegment.fromstring`): both ends are C, and the Python in between is one split, a few
dict look-ups and one join per record, cheaper than pysam's per-tag accessors.

- Read names become a per-file counter (`TemplateNames`); all records of a template (both mates,
  their supplementary and secondary alignments) share one new name.
- Aux tags are reduced to `GenomicRules.aux_tags_keep` (the entry `*` keeps every tag); RG values
  are renamed to the released @RG IDs; a kept SA tag loses its entries on dropped contigs.
- Records on a dropped contig are removed. A kept record whose mate was on a dropped contig is
  made mate-unmapped: flag 0x8 set, 0x2 and 0x20 cleared, RNEXT `*`, PNEXT and TLEN 0, and the
  MC, MQ and ms (mate CIGAR, quality, score) tags dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from deid.errors import MalformedInput
from deid.policy import GenomicRules
from deid.sam_header import HeaderPlan

KEEP_ALL_TAGS = "*"  # `aux_tags_keep = ["*"]`: every aux tag is kept (needed for the header-only path)
_PAIRED, _PROPER, _MATE_UNMAPPED, _MATE_REVERSE = 0x1, 0x2, 0x8, 0x20
_SECONDARY, _SUPPLEMENTARY = 0x100, 0x800
_MATE_TAGS = frozenset({"MC", "MQ", "ms"})
_FIXED_MATE_FLAGS = ~(_PROPER | _MATE_REVERSE)


class _Template:
    """Records still expected for one template: primaries, and supplementaries announced by SA."""

    __slots__ = ("name", "primaries", "supplementaries")

    def __init__(self, name: str, primaries: int) -> None:
        self.name = name
        self.primaries = primaries
        self.supplementaries = 0


class TemplateNames:
    """New read names: a counter per file that keeps each template's records under one name.

    Memory is bounded by the templates that are open: seen at least once, with a record still
    to come. A template expects its primaries (2 when flag 0x1 says paired, else 1) and the
    supplementary alignments that the primaries' SA tags announce; once all were seen its entry
    is evicted. In a coordinate-sorted file that is the pairs spanning the current position,
    plus pairs whose mate lies further on (other contig, long insert) until the mate arrives,
    plus templates with records missing from the file (filtered mates), which stay to the end;
    about 150 bytes each. In a name-grouped file at most one template is open.
    Secondary alignments are not announced anywhere: one that comes after its template was
    closed gets a fresh name (and its own entry, which then stays open to the end).
    """

    __slots__ = ("_count", "_open")

    def __init__(self) -> None:
        self._open: dict[str, _Template] = {}
        self._count = 0

    def rename(self, name: str, flag: int, supplementaries: int = 0) -> str:
        """The new name of a record; `supplementaries` is the number of SA entries of a primary record."""
        template = self._open.get(name)
        if template is None:
            self._count += 1
            template = _Template(str(self._count), 2 if flag & _PAIRED else 1)
            self._open[name] = template
        if not flag & (_SECONDARY | _SUPPLEMENTARY):
            template.primaries -= 1
            template.supplementaries += supplementaries
        elif flag & _SUPPLEMENTARY:
            template.supplementaries -= 1
        if template.primaries <= 0 and template.supplementaries <= 0:
            del self._open[name]
        return template.name

    @property
    def open_templates(self) -> int:
        """Templates held in memory now."""
        return len(self._open)


@dataclass(frozen=True, slots=True)
class RecordCounts:
    """What the record pass did."""

    records_in: int
    records_out: int
    dropped_contig: int


class RecordRewriter:
    """Rewrites one SAM text record at a time; `None` means the record is removed."""

    __slots__ = (
        "_drop_contigs",
        "_keep",
        "_keep_all",
        "_names",
        "_read_groups",
        "_source",
        "dropped_contig",
        "float_tags",
        "records_in",
        "records_out",
    )

    def __init__(self, plan: HeaderPlan, rules: GenomicRules, source: str, *, rename_reads: bool) -> None:
        keep = set(rules.aux_tags_keep)
        if not plan.keeps_read_groups:
            keep.discard("RG")
        self._keep_all = KEEP_ALL_TAGS in keep
        self._keep = frozenset(keep)
        self._read_groups = {f"RG:Z:{old}": f"RG:Z:{new}" for old, new in plan.read_groups.items()}
        self._drop_contigs = plan.dropped_contigs
        self._names = TemplateNames() if rename_reads else None
        self._source = source
        self.records_in = 0
        self.records_out = 0
        self.dropped_contig = 0
        self.float_tags: list[str] = []  # kept tags of the last record whose text form rounds a float

    @property
    def counts(self) -> RecordCounts:
        """Records read, written and removed for a dropped contig so far."""
        return RecordCounts(self.records_in, self.records_out, self.dropped_contig)

    @property
    def open_templates(self) -> int:
        """Templates whose new name is still held (0 when names are not rewritten)."""
        return 0 if self._names is None else self._names.open_templates

    def rewrite(self, line: str) -> str | None:
        """The released SAM text of one record, or None when it lies on a dropped contig."""
        self.records_in += 1
        fields = line.split("\t")
        if len(fields) < 11:
            raise MalformedInput(self._source, f"record {self.records_in} has fewer than 11 SAM fields")
        flag = int(fields[1])
        if self._names is not None:
            announced = 0
            if not flag & (_SECONDARY | _SUPPLEMENTARY) and "\tSA:Z:" in line:
                announced = _sa_entries(fields)
            fields[0] = self._names.rename(fields[0], flag, announced)
        drop = self._drop_contigs
        if fields[2] in drop:
            self.dropped_contig += 1
            return None
        mate_dropped = fields[6] in drop
        if mate_dropped:
            fields[1] = str((flag | _MATE_UNMAPPED) & _FIXED_MATE_FLAGS)
            fields[6], fields[7], fields[8] = "*", "0", "0"
        kept = fields[:11]
        kept += self._tags(fields, mate_dropped)
        self.records_out += 1
        return "\t".join(kept)

    def _tags(self, fields: list[str], mate_dropped: bool) -> list[str]:
        """The released aux fields of one record; notes the kept float tags in `float_tags`."""
        self.float_tags = []
        kept: list[str] = []
        drop = self._drop_contigs
        for item in fields[11:]:
            key = item[:2]
            if not self._keep_all and key not in self._keep:
                continue
            if key == "RG":
                renamed = self._read_groups.get(item)
                if renamed is None:
                    raise MalformedInput(
                        self._source,
                        f"record {self.records_in}: its RG tag names a read group the header does not "
                        "declare; add the @RG line or remove the tag",
                    )
                kept.append(renamed)
            elif key == "SA" and drop:
                sa = _without_dropped(item, drop)
                if sa:
                    kept.append(sa)
            elif not (mate_dropped and key in _MATE_TAGS):
                if item[3] == "f" or item.startswith("B:f", 3):
                    self.float_tags.append(key)
                kept.append(item)
        return kept


def _sa_entries(fields: list[str]) -> int:
    """Number of alignments listed in the SA tag (`rname,pos,strand,CIGAR,mapQ,NM;` each)."""
    for item in fields[11:]:
        if item.startswith("SA:Z:"):
            return sum(1 for entry in item[5:].split(";") if entry)
    return 0


def _without_dropped(item: str, drop: frozenset[str]) -> str:
    """The SA tag without its entries on dropped contigs ('' when none is left)."""
    entries = [e for e in item[5:].split(";") if e and e.split(",", 1)[0] not in drop]
    return "SA:Z:" + "".join(f"{e};" for e in entries) if entries else ""
