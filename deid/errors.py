"""Errors of the deid package.

    DeidError                    root: every failure deid reports to its caller
    ├── MalformedInput           an input file, row or field is wrong (path, detail)
    └── OutputExists             the output path is taken; genegate never overwrites a release

Messages name the operation, the object and the fix, never a protected value.
"""

from __future__ import annotations


class DeidError(Exception):
    """Root of the deid package's errors."""


class MalformedInput(DeidError):
    """An input file, row or field cannot be used as it is."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail

    def __reduce__(self) -> tuple[type[MalformedInput], tuple[str, str]]:
        """Rebuilt from its two arguments (a Dask worker sends it back pickled)."""
        return (type(self), (self.path, self.detail))


class OutputExists(DeidError):
    """The output path already exists."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} already exists; choose a new output path or remove it first")
        self.path = path

    def __reduce__(self) -> tuple[type[OutputExists], tuple[str]]:
        """Rebuilt from its argument (a Dask worker sends it back pickled)."""
        return (type(self), (self.path,))
