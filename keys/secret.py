"""Secret values with a redacted repr: a passphrase or a symmetric data key never prints itself.

Pass these, not bare str/bytes, wherever a value could end up in a log line, an exception, a
Prefect parameter or a traceback's locals. `reveal()` is the one place the value comes out.
"""

from __future__ import annotations

import hmac
import secrets


class Passphrase:
    """A passphrase from $GENEGATE_PASSPHRASE or a prompt."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The passphrase itself, for a KDF only."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Passphrase(<redacted>)"

    __str__ = __repr__


class DataKey:
    """A 32-byte symmetric key (the pseudonym vault's key, a release key at rest)."""

    __slots__ = ("_raw",)
    SIZE = 32

    def __init__(self, raw: bytes) -> None:
        if len(raw) != self.SIZE:
            raise ValueError(f"a data key has {self.SIZE} bytes")
        self._raw = bytes(raw)

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(cls.SIZE))

    def reveal(self) -> bytes:
        """The key bytes, for a cipher only."""
        return self._raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataKey) and hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return "DataKey(<redacted>)"

    __str__ = __repr__
