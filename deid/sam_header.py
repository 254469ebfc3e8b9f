"""The SAM header of a de-identified BAM/CRAM: what is kept, what is renamed, what is dropped.

Pure core (no pysam, no I/O): `plan_header` turns the input's header text into the released
header text and the facts the record pass needs (read-group renames, dropped contigs).
`bam_header_bytes` encodes a header as the binary BAM header block, for the header-only path.

The released header (SPEC.md 3, research/reid.md 3.10):
- only the record types the policy keeps (`GenomicRules.sam_header_keep`, e.g. HD, SQ, RG); @SQ
  is structural (records point at it) and is always kept; @PG and @CO are dropped unless listed;
- @HD keeps VN, SO, GO, SS; @SQ keeps SN, LN, M5 (UR, AS, SP, DS and the rest go: UR is a path);
- @RG keeps PL; SM becomes the pseudonym; ID becomes `rg1`, `rg2`, ... in header order (records'
  RG tags are renamed to match), or stays as it is when the records are not rewritten (then the
  ID must not contain the sample name or any dropped value of its line); LB, PU, DS, CN, DT, PI,
  PM, PG, BC, KS, FO and any other field go;
- @SQ lines of dropped contigs (`GenomicRules.drop_contigs`) are removed. This renumbers the
  contigs after them, so the record pass maps records by contig name; `keeps_numbering` tells
  whether the numbering of the kept contigs is unchanged (the dropped ones are a tail).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deid.errors import MalformedInput
from deid.policy import GenomicRules

_KEEP_FIELDS: dict[str, tuple[str, ...]] = {
    "HD": ("VN", "SO", "GO", "SS"),
    "SQ": ("SN", "LN", "M5"),
    "RG": ("ID", "SM", "PL"),
}
_ALWAYS = frozenset({"SQ"})  # records refer to @SQ by position: never dropped by the allow-list
_MIN_LEAK_CHECK = 3  # shorter dropped values ("1", "NA") cannot be told apart from chance


class ReadGroupIdLeaks(MalformedInput):
    """An @RG ID that carries an identifier cannot be kept; the records must be rewritten."""


@dataclass(frozen=True, slots=True)
class HeaderPlan:
    """The released header text and what the record pass must do to match it."""

    text: str
    contigs: tuple[tuple[str, int], ...]  # kept @SQ (name, length), in order
    read_groups: Mapping[str, str]  # input @RG ID -> released ID
    dropped_contigs: frozenset[str]  # contigs of the input header that are removed
    keeps_numbering: bool  # kept contigs keep their index (every dropped @SQ comes after them)
    keeps_read_groups: bool  # @RG lines are released (else records lose their RG tag)


@dataclass(frozen=True, slots=True)
class _Line:
    kind: str
    fields: tuple[tuple[str, str], ...]
    number: int  # 1-based line number in the header, for messages

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)


def plan_header(
    text: str,
    samples: Mapping[str, str],
    rules: GenomicRules,
    source: str,
    *,
    rename_read_groups: bool = True,
) -> HeaderPlan:
    """The released header for `text`; MalformedInput (naming the line, never a value) if impossible."""
    lines = _parse(text, source)
    keep = set(rules.sam_header_keep) | _ALWAYS
    dropped_names = frozenset(rules.drop_contigs)
    out: list[str] = []
    contigs: list[tuple[str, int]] = []
    dropped: set[str] = set()
    read_groups: dict[str, str] = {}
    seen_dropped_at = -1
    last_kept_at = -1
    for line in lines:
        if line.kind not in keep:
            continue
        if line.kind == "SQ":
            name, length = _contig(line, source)
            if name in dropped_names:
                dropped.add(name)
                seen_dropped_at = max(seen_dropped_at, line.number)
                continue
            contigs.append((name, length))
            last_kept_at = line.number
        elif line.kind == "CO":
            out.append("@CO\t" + "\t".join(v for _, v in line.fields))
            continue
        released = line
        if line.kind == "RG":
            released = _read_group(line, samples, read_groups, source, rename=rename_read_groups)
        allowed = _KEEP_FIELDS.get(line.kind)
        fields = [(k, v) for k, v in released.fields if allowed is None or k in allowed]
        out.append("\t".join([f"@{line.kind}", *(f"{k}:{v}" for k, v in fields)]))
    return HeaderPlan(
        text="".join(f"{line}\n" for line in out),
        contigs=tuple(contigs),
        read_groups=read_groups,
        dropped_contigs=frozenset(dropped),
        keeps_numbering=not dropped or seen_dropped_at > last_kept_at,
        keeps_read_groups="RG" in keep,
    )


def _parse(text: str, source: str) -> list[_Line]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw:
            continue
        if not raw.startswith("@") or len(raw) < 3:
            raise MalformedInput(source, f"header line {number} is not a SAM header line (@XX)")
        kind, _, rest = raw[1:].partition("\t")
        if kind == "CO":
            lines.append(_Line(kind, (("", rest),), number))
            continue
        fields = []
        for item in rest.split("\t") if rest else []:
            key, sep, value = item.partition(":")
            if not sep or len(key) != 2:
                raise MalformedInput(
                    source, f"header line {number} (@{kind}) has a field that is not TAG:VALUE"
                )
            fields.append((key, value))
        lines.append(_Line(kind, tuple(fields), number))
    return lines


def _contig(line: _Line, source: str) -> tuple[str, int]:
    name, length = line.get("SN"), line.get("LN")
    if not name or length is None or not length.isdigit():
        raise MalformedInput(source, f"header line {line.number} (@SQ) needs SN and a numeric LN")
    return name, int(length)


def _read_group(
    line: _Line, samples: Mapping[str, str], renames: dict[str, str], source: str, *, rename: bool
) -> _Line:
    where = f"header line {line.number} (@RG)"
    old_id, sample = line.get("ID"), line.get("SM")
    if not old_id:
        raise MalformedInput(source, f"{where} has no ID; every @RG needs one")
    if old_id in renames:
        raise MalformedInput(source, f"{where} repeats the ID of an earlier @RG; make read-group IDs unique")
    if not sample:
        raise MalformedInput(source, f"{where} has no SM; add the sample id as SM")
    if sample not in samples:
        raise MalformedInput(
            source,
            f"{where}: its SM is not a sample of this release; fix SM or add the sample to the manifest",
        )
    if rename:
        new_id = f"rg{len(renames) + 1}"
    else:
        dropped = [v for k, v in line.fields if k not in _KEEP_FIELDS["RG"]] + [sample]
        if any(len(v) >= _MIN_LEAK_CHECK and v.casefold() in old_id.casefold() for v in dropped):
            raise ReadGroupIdLeaks(source, f"{where}: its ID contains its sample name or a dropped field")
        new_id = old_id
    renames[old_id] = new_id
    fields = {"ID": new_id, "SM": samples[sample]}
    pl = line.get("PL")
    if pl is not None:
        fields["PL"] = pl
    return _Line("RG", tuple(fields.items()), line.number)


def bam_header_bytes(text: str, contigs: Sequence[tuple[str, int]]) -> bytes:
    """The uncompressed BAM header: magic, l_text, text, n_ref, then each reference's name and length."""
    encoded = text.encode("utf-8")
    parts = [b"BAM\x01", struct.pack("<i", len(encoded)), encoded, struct.pack("<i", len(contigs))]
    for name, length in contigs:
        raw = name.encode("utf-8") + b"\x00"
        parts += [struct.pack("<i", len(raw)), raw, struct.pack("<i", length)]
    return b"".join(parts)


def bam_header_length(data: bytes) -> int | None:
    """Length of the BAM header at the start of `data` (decompressed), or None if `data` is too short.

    Raises ValueError when `data` does not start with the BAM magic.
    """
    if len(data) < 8:
        return None
    if data[:4] != b"BAM\x01":
        raise ValueError("not a BAM header")
    (l_text,) = struct.unpack_from("<i", data, 4)
    offset = 8 + l_text
    if len(data) < offset + 4:
        return None
    (n_ref,) = struct.unpack_from("<i", data, offset)
    offset += 4
    for _ in range(n_ref):
        if len(data) < offset + 4:
            return None
        (l_name,) = struct.unpack_from("<i", data, offset)
        offset += 4 + l_name + 4
    return offset if len(data) >= offset else None
