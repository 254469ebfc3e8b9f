"""The pseudonym vault: random codes for subjects and samples, one mapping per domain.

HIPAA 164.514(c): a re-identification code must not be derived from the identifier, so codes
are random (60 bits from the OS CSPRNG, Crockford base32), never a hash or HMAC. The same value
keeps its code within a domain across releases; another domain has its own key and unrelated
codes, so partners given different domains cannot join their copies.

At rest a domain is one file, `vault/<domain>.vault` (0600): a JSON line with the domain's data
key wrapped by the lab key or AWS KMS (keys/wrap.py), then the mapping as Arrow IPC sealed with
ChaCha20-Poly1305
(associated data: format and domain, so a file moved to another domain does not open). Runs are
serialised per domain with an exclusive file lock around read-assign-write, and the file is
replaced atomically: two concurrent runs never hand out two codes for one value and never
corrupt the vault. Nothing here logs or raises with a value or a code in its message.
"""

from __future__ import annotations

import base64
import enum
import fcntl
import io
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys.errors import KeyFormatError, KeyStoreError
from keys.secret import DataKey
from keys.signed_json import write_atomic
from keys.wrap import KeyWrapper, WrappedKey

if TYPE_CHECKING:  # polars and pyarrow load only when a vault is used: `import keys` stays light
    import polars as pl
    import pyarrow as pa

VAULT_FORMAT = 1
_ALPHABET = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_CODE_CHARS = 12  # 60 bits


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("kind", pa.string()), ("value", pa.string()), ("code", pa.string())])


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
    import numpy as np

    alphabet = np.frombuffer(_ALPHABET, dtype=np.uint8)
    raw = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    shifts = np.arange(_CODE_CHARS - 1, -1, -1, dtype=np.uint64) * np.uint64(5)
    digits = (raw[:, None] >> shifts) & np.uint64(31)
    chars = alphabet[digits.astype(np.intp)]
    body = np.ascontiguousarray(chars).view(f"S{_CODE_CHARS}").ravel()
    return [kind.prefix + b.decode("ascii") for b in body.tolist()]


class Vault:
    """One domain of the pseudonym vault in a keystore."""

    def __init__(self, home: Path, domain: str, wrapper: KeyWrapper) -> None:
        self.directory = home / "vault"
        self.domain = domain
        self.path = self.directory / f"{domain}.vault"
        self._wrapper = wrapper

    @property
    def _aad(self) -> bytes:
        return f"genegate-vault|{VAULT_FORMAT}|{self.domain}".encode()

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
        """assign for several kinds under one lock, one load and at most one store of the vault."""
        import polars as pl
        import pyarrow as pa

        out: dict[CodeKind, pl.DataFrame] = {}
        with self._locked():
            key, table = self._load()
            stored = pl.from_arrow(table)
            assert isinstance(stored, pl.DataFrame)
            used = stored.get_column("code")
            added_rows: list[pl.DataFrame] = []
            for kind, values in requests.items():
                wanted = values.rename("value").cast(pl.String).unique(maintain_order=True).to_frame()
                known = stored.filter(pl.col("kind") == kind.value).select("value", "code")
                joined = wanted.join(known, on="value", how="left", maintain_order="left")
                missing = joined.filter(pl.col("code").is_null()).get_column("value")
                if len(missing) and not create:
                    raise KeyStoreError(
                        f"{len(missing)} {kind} value(s) have no code in vault domain {self.domain}"
                    )
                if len(missing):
                    fresh = _unique_codes(kind, len(missing), used)
                    used = pl.concat([used, fresh])
                    added = pl.DataFrame({"value": missing, "code": fresh})
                    added_rows.append(
                        added.with_columns(kind=pl.lit(kind.value)).select("kind", "value", "code")
                    )
                    joined = joined.with_columns(
                        pl.col("code").fill_null(
                            pl.col("value").replace_strict(
                                added.get_column("value"), added.get_column("code"), default=None
                            )
                        )
                    )
                out[kind] = joined
            if added_rows:
                new = pl.concat(added_rows).to_arrow().cast(_schema())
                self._store(key, pa.concat_tables([table, new]))
        return out

    def size(self) -> dict[str, int]:
        """How many codes of each kind the domain holds (counts only)."""
        with self._locked():
            _, table = self._load()
        kinds = table.column("kind").to_pylist()
        return {k.value: kinds.count(k.value) for k in CodeKind}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.directory / f"{self.domain}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> tuple[DataKey, pa.Table]:
        if not self.path.exists():
            key = DataKey.generate()
            empty = _schema().empty_table()
            self._store(key, empty, wrapped=self._wrapper.wrap(key, f"vault:{self.domain}"))
            return key, empty
        try:
            head, _, sealed = self.path.read_bytes().partition(b"\n")
            body = json.loads(head)
            wrapped = WrappedKey.from_json(body["wrapped_key"])
            nonce = base64.b64decode(body["nonce"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFormatError(
                str(self.path), "not a genegate vault file; restore it from a backup"
            ) from exc
        if body.get("domain") != self.domain or wrapped.purpose != f"vault:{self.domain}":
            raise KeyStoreError(f"{self.path} belongs to another vault domain; restore the right file")
        key = self._wrapper.unwrap(wrapped)
        try:
            plain = ChaCha20Poly1305(key.reveal()).decrypt(nonce, sealed, self._aad)
        except InvalidTag as exc:
            raise KeyStoreError(
                f"{self.path} does not authenticate: it was altered; restore it from a backup"
            ) from exc
        self._wrapped = wrapped
        from pyarrow import ipc

        return key, ipc.open_stream(plain).read_all()

    def _store(self, key: DataKey, table: pa.Table, wrapped: WrappedKey | None = None) -> None:
        wrapped = wrapped or self._wrapped
        self._wrapped = wrapped
        from pyarrow import ipc

        sink = io.BytesIO()
        with ipc.new_stream(sink, _schema()) as writer:
            writer.write_table(table)
        nonce = os.urandom(12)
        sealed = ChaCha20Poly1305(key.reveal()).encrypt(nonce, sink.getvalue(), self._aad)
        body = {
            "format": VAULT_FORMAT,
            "domain": self.domain,
            "wrapped_key": wrapped.to_json(),
            "nonce": base64.b64encode(nonce).decode("ascii"),
        }
        # one JSON line (no secret in it), a newline, then the sealed mapping
        write_atomic(self.path, json.dumps(body).encode("utf-8") + b"\n" + sealed, mode=0o600)


def _unique_codes(kind: CodeKind, n: int, used: pl.Series) -> pl.Series:
    """n random codes, none already used in the domain and no two alike (checked column-wise)."""
    import polars as pl

    out = pl.Series("code", [], dtype=pl.String)
    while out.len() < n:
        batch = pl.Series("code", random_codes(kind, n - out.len()), dtype=pl.String)
        batch = batch.filter(~batch.is_in(used.implode()) & ~batch.is_in(out.implode())).unique(
            maintain_order=True
        )
        out = pl.concat([out, batch])
    return out
