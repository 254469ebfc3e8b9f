"""Transfer: the legal-basis gate, Crypt4GH envelopes, delivery and the transfer log."""

from __future__ import annotations

__all__: list[str] = []
