"""Key management: lab keys, recipient registry, pseudonym vault, KMS adapter."""

from __future__ import annotations

__all__: list[str] = []
