"""Errors of the command line.

FlowsError                   root
├── UsageProblem             options that parse but make no sense together (exit 2)
└── NotBuilt                 a command of the contract that is not built yet (exit 2)
"""

from __future__ import annotations


class FlowsError(Exception):
    """Root of the flows package's errors."""


class UsageProblem(FlowsError):
    """The command line is well-formed but asks for something impossible."""


class NotBuilt(FlowsError):
    """The command exists in SPEC.md but not in this version."""

    def __init__(self, command: str, issue: int) -> None:
        super().__init__(f"`genegate {command}` is not built yet (issue #{issue}); nothing was done")
        self.command = command
        self.issue = issue
