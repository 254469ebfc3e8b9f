"""The pseudonym vault: random codes for subjects and samples, one mapping per domain.

HIPAA 164.514(c): a re-identification code must not be derived from the identifier, so codes
are random (60 bits from the OS CSPRNG, Crockford base32), never a hash or HMAC. The same value
keeps its code within a domain across releases; another domain has its own key and unrelated
codes, so partners given different domains cannot join their copies.

At rest a domain is one file, `vault/<domain>.vault` (0600): a JSON line with the domain's data
key wrapped by the lab key or AWS KMS (keys/wrap.py), then the mapping as Arrow IPC sealed with
ChaCha20-Poly1305 (keys/sealed.py; associated data: format and domain, so a file moved to another
domain does not open). Runs are
serialised per domain with an exclusive file lock around read-assign-write, and the file is
replaced atomically: two concurrent runs never hand out two codes for one value and never
corrupt the vault. Nothing here logs or raises with a value or a code in its message.

Each sample entry records its owner, the code of the subject it belongs to, when the caller gives
both kinds at once (`assign_many` reads its requests as the columns of one table, as deid passes
them), so a subject's deletion finds the subject's sample codes without any manifest. Entries
written before owners were recorded have none (the column is added, empty, on the next write);
their samples are named to `forget` by the caller (`genegate subject delete --manifest`).

Deletion (`forget`, GDPR Art 17 and CGIPA; `genegate subject delete`) removes the subject's entry
and its samples' entries and keeps their codes as `withdrawn` rows with no value: the code no
longer resolves to anyone, is never handed out again, and the transfer gate can still refuse an
older release that holds it (`withdrawn`). Withdrawn rows are kept sorted by code, so the file
does not tell which deletion came when. The file is then re-sealed under a fresh data key.
"""

from __future__ import annotations

import enum
import io
import os
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keys.errors import KeyStoreError
from keys.sealed import SealedFile
from keys.secret import DataKey
from keys.wrap import KeyWrapper

if TYPE_CHECKING:  # polars and pyarrow load only when a vault is used: `import keys` stays light
    import polars as pl
    import pyarrow as pa

VAULT_FORMAT = 1
VAULT_SUFFIX = ".vault"
WITHDRAWN = "withdrawn"  # the kind of a deleted subject's or sample's code: no value, never reissued
_ALPHABET = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_CODE_CHARS = 12  # 60 bits


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [("kind", pa.string()), ("value", pa.string()), ("code", pa.string()), ("owner", pa.string())]
    )


class CodeKind(enum.StrEnum):
    """What a code stands for; each kind has its own prefix so codes read unambiguously."""

    SUBJECT = "subject"
    SAMPLE = "sample"

    @property
    def pattern(self) -> str:
        """A regular expression that matches exactly the codes of this kind."""
        return f"^{self.prefix}[{_ALPHABET.decode()}]{{{_CODE_CHARS}}}$"

    @property
    def prefix(self) -> str:
        """GGP for people (subjects), GGS for samples."""
        return {CodeKind.SUBJECT: "GGP", CodeKind.SAMPLE: "GGS"}[self]


def random_codes(kind: CodeKind, n: int) -> list[str]:
    """n fresh random codes of a kind (not checked for collisions; see Vault.pseudonyms)."""
    return random_code_series(kind, n).to_list()


def random_code_series(kind: CodeKind, n: int) -> pl.Series:
    """random_codes as a polars Series, built column-wise: a million codes in a few hundredths of a second.

    Each character is one CSPRNG byte masked to 5 bits (256 is a multiple of 32, so every symbol of
    the alphabet is equally likely); the code bytes become an Arrow string array without a copy per
    code.
    """
    import numpy as np
    import polars as pl
    import pyarrow as pa

    alphabet = np.frombuffer(_ALPHABET, dtype=np.uint8)
    prefix = np.frombuffer(kind.prefix.encode("ascii"), dtype=np.uint8)
    width = prefix.size + _CODE_CHARS
    chars = np.empty((n, width), dtype=np.uint8)
    chars[:, : prefix.size] = prefix
    random = np.frombuffer(secrets.token_bytes(_CODE_CHARS * n), dtype=np.uint8).reshape(n, _CODE_CHARS)
    np.take(alphabet, random & 31, out=chars[:, prefix.size :])
    small = (n + 1) * width < 2**31  # 32-bit offsets (polars takes them without a conversion pass)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32 if small else np.int64)
    kind_of = pa.string() if small else pa.large_string()
    array = pa.Array.from_buffers(kind_of, n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.rename("code")


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What `Vault.forget` removed from one domain (counts only)."""

    domain: str
    subject_codes: int
    sample_codes: int

    @property
    def removed(self) -> bool:
        """The domain held a code of the subject or of one of its samples."""
        return bool(self.subject_codes or self.sample_codes)


def vault_domains(home: Path) -> tuple[str, ...]:
    """Every vault domain the keystore holds (a file vault/<domain>.vault), sorted."""
    directory = home / "vault"
    if not directory.is_dir():
        return ()
    return tuple(sorted(p.name.removesuffix(VAULT_SUFFIX) for p in directory.glob(f"*{VAULT_SUFFIX}")))


class Vault:
    """One domain of the pseudonym vault in a keystore."""

    def __init__(self, home: Path, domain: str, wrapper: KeyWrapper) -> None:
        self.directory = home / "vault"
        self.domain = domain
        self.path = self.directory / f"{domain}{VAULT_SUFFIX}"
        self._wrapper = wrapper
        self._sealed = self._sealed_file(self.path)

    def _sealed_file(self, path: Path) -> SealedFile:
        return SealedFile(
            path,
            purpose=f"vault:{self.domain}",
            aad=f"genegate-vault|{VAULT_FORMAT}|{self.domain}".encode(),
            header={"format": VAULT_FORMAT, "domain": self.domain},
            wrapper=self._wrapper,
            what="vault file",
            mismatch="belongs to another vault domain",
        )

    def pseudonyms(self, kind: CodeKind, values: Sequence[str], create: bool = True) -> dict[str, str]:
        """The code of each value; with create, values without one get a new random code (stored)."""
        import polars as pl

        frame = self.assign(kind, pl.Series("value", list(values), dtype=pl.String), create)
        return dict(zip(frame["value"].to_list(), frame["code"].to_list(), strict=True))

    def assign(self, kind: CodeKind, values: pl.Series, create: bool = True) -> pl.DataFrame:
        """A (value, code) frame for the distinct values, in first-seen order; new values get new codes."""
        return self.assign_many({kind: values}, create)[kind]

    def assign_many(
        self, requests: Mapping[CodeKind, pl.Series], create: bool = True
    ) -> dict[CodeKind, pl.DataFrame]:
        """assign for several kinds under one lock, one load and at most one store of the vault.

        The requests are the columns of one table: given subjects and samples of the same length,
        row i's sample belongs to row i's subject, and (with create) each new sample entry records
        that subject's code as its owner; entries written before owners were kept get theirs too.
        """
        import polars as pl
        import pyarrow as pa

        out: dict[CodeKind, pl.DataFrame] = {}
        paired = _paired(requests) if create else None
        with self._sealed.locked():
            key, table = self._load()
            stored = pl.from_arrow(table)
            assert isinstance(stored, pl.DataFrame)
            used = stored.get_column("code")
            added_rows: list[pl.DataFrame] = []
            legacy: pl.DataFrame | None = None
            for kind in sorted(requests, key=lambda k: k is not CodeKind.SUBJECT):  # subjects first
                values = requests[kind].rename("value").cast(pl.String)
                first = values.is_first_distinct()
                wanted = values.filter(first).to_frame()
                # each distinct sample's subject, aligned with wanted (and joined), when paired
                owners = paired.filter(first) if kind is CodeKind.SAMPLE and paired is not None else None
                known = stored.filter(pl.col("kind") == kind.value).select("value", "code")
                joined = wanted.join(known, on="value", how="left", maintain_order="left")
                gaps = joined.get_column("code").is_null().arg_true()
                if gaps.len() and not create:
                    raise KeyStoreError(
                        f"{gaps.len()} {kind} value(s) have no code in vault domain {self.domain}"
                    )
                if gaps.len():
                    fresh = _unique_codes(kind, gaps.len(), used)
                    used = pl.concat([used, fresh])
                    rows = joined[gaps].with_columns(code=fresh)
                    if owners is not None:
                        rows = rows.with_columns(owners.gather(gaps))
                    added = _owned(rows, out.get(CodeKind.SUBJECT))
                    added_rows.append(added.with_columns(kind=pl.lit(kind.value)))
                    joined = joined.with_columns(joined.get_column("code").clone().scatter(gaps, fresh))
                if owners is not None:
                    legacy = _legacy_owners(stored, wanted.with_columns(owners), out.get(CodeKind.SUBJECT))
                out[kind] = joined.select("value", "code")
            new = pl.concat(added_rows).select("kind", "value", "code", "owner") if added_rows else None
            if legacy is not None:  # entries from before owners were kept: rewrite them with theirs
                whole = pl.concat([legacy, new]) if new is not None else legacy
                self._store(key, whole.to_arrow().cast(_schema()))
            elif new is not None:
                self._store(key, pa.concat_tables([table, new.to_arrow().cast(_schema())]))
        return out

    def lookup(self, kind: CodeKind, values: Collection[str]) -> dict[str, str]:
        """The codes of those values that have one (read-only: creates no code and no file)."""
        import polars as pl

        if not self.path.exists() or not values:
            return {}
        with self._sealed.locked():
            _, table = self._load()
        stored = pl.from_arrow(table)
        assert isinstance(stored, pl.DataFrame)
        wanted = pl.Series("value", list(values), dtype=pl.String).implode()
        found = stored.filter((pl.col("kind") == kind.value) & pl.col("value").is_in(wanted))
        return dict(zip(found["value"].to_list(), found["code"].to_list(), strict=True))

    def size(self) -> dict[str, int]:
        """How many codes of each kind the domain holds (counts only; withdrawn codes not included)."""
        with self._sealed.locked():
            _, table = self._load()
        kinds = table.column("kind").to_pylist()
        return {k.value: kinds.count(k.value) for k in CodeKind}

    def withdrawn(self) -> frozenset[str]:
        """The codes of deleted subjects and samples: they resolve to no one and are never reissued."""
        import pyarrow.compute as pc

        if not self.path.exists():
            return frozenset()
        with self._sealed.locked():
            _, table = self._load()
        rows = table.filter(pc.equal(table.column("kind"), WITHDRAWN))
        return frozenset(rows.column("code").to_pylist())

    def unowned_samples(self) -> int:
        """How many sample entries record no owner (written before owners were kept)."""
        import pyarrow.compute as pc

        if not self.path.exists():
            return 0
        with self._sealed.locked():
            _, table = self._load()
        mask = pc.and_(
            pc.equal(table.column("kind"), CodeKind.SAMPLE.value), pc.is_null(table.column("owner"))
        )
        return int(pc.sum(mask).as_py() or 0)

    def forget(self, subject_id: str, sample_ids: Collection[str] = ()) -> Forgotten:
        """Remove a subject and its samples (those it owns, and sample_ids) from the domain.

        Their codes stay only as withdrawn codes with no value; the file is re-sealed under a fresh
        data key. A domain without the subject or its samples is left as it is.
        """
        import polars as pl

        if not self.path.exists():
            return Forgotten(self.domain, 0, 0)
        with self._sealed.locked():
            _, table = self._load()
            stored = pl.from_arrow(table)
            assert isinstance(stored, pl.DataFrame)
            # masks are filled: a null (an entry without owner) must read as "not this subject's"
            subject = (
                (pl.col("kind") == CodeKind.SUBJECT.value) & (pl.col("value") == subject_id)
            ).fill_null(value=False)
            codes = stored.filter(subject).get_column("code")
            sample = (
                (pl.col("kind") == CodeKind.SAMPLE.value)
                & (
                    pl.col("owner").is_in(codes.implode())
                    | pl.col("value").is_in(pl.Series(list(sample_ids), dtype=pl.String).implode())
                )
            ).fill_null(value=False)
            samples = stored.filter(sample).get_column("code")
            if codes.is_empty() and samples.is_empty():
                return Forgotten(self.domain, 0, 0)
            gone = pl.concat([stored.filter(pl.col("kind") == WITHDRAWN).get_column("code"), codes, samples])
            withdrawn = pl.DataFrame({"code": gone.unique().sort()}).with_columns(
                kind=pl.lit(WITHDRAWN), value=pl.lit(None, pl.String), owner=pl.lit(None, pl.String)
            )
            kept = stored.filter(~subject & ~sample & (pl.col("kind") != WITHDRAWN))
            result = pl.concat([kept, withdrawn.select(kept.columns)]).to_arrow().cast(_schema())
            self._reseal(result)
        return Forgotten(self.domain, codes.len(), samples.len())

    def _load(self) -> tuple[DataKey, pa.Table]:
        from pyarrow import ipc

        key, plain = self._sealed.load()
        if plain is None:  # a new domain: its (empty) file is written at once, so its key is kept
            empty = _schema().empty_table()
            self._store(key, empty)
            return key, empty
        table = ipc.open_stream(plain).read_all()
        if "owner" not in table.column_names:  # a file written before owners were kept
            import pyarrow as pa

            table = table.append_column("owner", pa.nulls(table.num_rows, pa.string()))
        return key, table

    def _store(self, key: DataKey, table: pa.Table) -> None:
        self._sealed.store(key, _ipc_bytes(table))

    def _reseal(self, table: pa.Table) -> None:
        """Replace the file with table sealed under a new data key (called under the lock)."""
        staging = self.directory / f".{self.domain}{VAULT_SUFFIX}.reseal"
        staging.unlink(missing_ok=True)  # left by a run that died here; the vault file is intact
        fresh = self._sealed_file(staging)
        key, _ = fresh.load()  # the staging file does not exist: a fresh data key, newly wrapped
        fresh.store(key, _ipc_bytes(table))
        os.replace(staging, self.path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _ipc_bytes(table: pa.Table) -> bytes:
    from pyarrow import ipc

    sink = io.BytesIO()
    with ipc.new_stream(sink, _schema()) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _paired(requests: Mapping[CodeKind, pl.Series]) -> pl.Series | None:
    """The subject of each requested sample (row-aligned), when the requests are one table's columns."""
    import polars as pl

    samples, people = requests.get(CodeKind.SAMPLE), requests.get(CodeKind.SUBJECT)
    if samples is None or people is None or samples.len() != people.len():
        return None
    return people.cast(pl.String).rename("subject")


def _owned(rows: pl.DataFrame, subjects: pl.DataFrame | None) -> pl.DataFrame:
    """rows (value, code[, subject]) as (value, code, owner): the owner is the subject's code."""
    import polars as pl

    if "subject" not in rows.columns or subjects is None:
        return rows.select("value", "code", owner=pl.lit(None, pl.String))
    owners = subjects.select(subject="value", owner="code")
    return rows.join(owners, on="subject", how="left", maintain_order="left").select("value", "code", "owner")


def _legacy_owners(
    stored: pl.DataFrame, wanted: pl.DataFrame, subjects: pl.DataFrame | None
) -> pl.DataFrame | None:
    """stored with owners filled in for the requested sample entries that had none (None: nothing to fill)."""
    import polars as pl

    unowned = (pl.col("kind") == CodeKind.SAMPLE.value) & pl.col("owner").is_null()
    if subjects is None or "subject" not in wanted.columns or stored.filter(unowned).is_empty():
        return None
    gaps = _owned(
        stored.filter(unowned).select("value", "code").join(wanted.select("value", "subject"), on="value"),
        subjects,
    ).filter(pl.col("owner").is_not_null())
    if gaps.is_empty():
        return None
    fill = pl.col("value").replace_strict(gaps.get_column("value"), gaps.get_column("owner"), default=None)
    return stored.with_columns(owner=pl.when(unowned).then(fill).otherwise(pl.col("owner")))


def _unique_codes(kind: CodeKind, n: int, used: pl.Series) -> pl.Series:
    """n random codes, none already used in the domain and no two alike (checked column-wise).

    Codes of another kind carry another prefix, so only this kind's used codes can collide. With
    60 random bits a collision is all but impossible; the check is still made, and cheaply: a
    batch with as many distinct codes as codes, drawn for an empty kind, needs nothing else.
    """
    import polars as pl

    used = used.filter(used.str.starts_with(kind.prefix))
    out = pl.Series("code", [], dtype=pl.String)
    while out.len() < n:
        batch = random_code_series(kind, n - out.len())
        if used.len() or out.len():
            batch = batch.filter(~batch.is_in(pl.concat([used, out]).implode()))
        if batch.n_unique() != batch.len():
            batch = batch.unique(maintain_order=True)
        out = pl.concat([out, batch])
    return out
