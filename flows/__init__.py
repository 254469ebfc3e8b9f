"""Prefect 3 flows and the `genegate` command line that operators use to trigger them."""

from __future__ import annotations

__all__: list[str] = []
