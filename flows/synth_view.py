"""How the CLI shows progress (synth, deid, transfer, demo) and what synth made (rich, on stderr).

deid.synth (and with it msprime) is imported for type checking only, so that commands which only
want a progress bar do not pay for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as ProgressBars
from rich.table import Table

if TYPE_CHECKING:
    from deid.synth import CohortSummary

Progress = Callable[[str, int, int], None]  # (stage, done, total), deid.synth.Progress's shape


def _no_progress(stage: str, done: int, total: int) -> None:
    """Progress that shows nothing."""


@contextmanager
def progress_bars(console: Console, enabled: bool) -> Iterator[Progress]:
    """A progress callback (stage, done, total) drawing one bar per stage on a terminal (synth: genotypes,
    reads; deid: genomic files; transfer: files); a no-op off a terminal or when disabled."""
    if not enabled or not console.is_terminal:
        yield _no_progress
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with ProgressBars(*columns, console=console, transient=True) as bars:
        tasks: dict[str, object] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done)  # type: ignore[arg-type]

        yield update


def print_cohort_summary(console: Console, summary: CohortSummary) -> None:
    """A short table of what the cohort holds: counts only, never an identifier value."""
    table = Table(title=f"synthetic identified cohort: {summary.out}", show_header=False, box=None)
    table.add_row("samples", str(summary.samples))
    table.add_row("variant sites", ", ".join(f"{k} {v}" for k, v in summary.sites.items()))
    table.add_row("files", str(len(summary.files)))
    table.add_row("edge cases", ", ".join(f"{k} {v}" for k, v in summary.edge_cases.items()))
    table.add_row("regions", ", ".join(f"{k} {v}" for k, v in summary.regions.items()))
    table.add_row("planted identifiers", f"{summary.secrets} (listed in secrets.tsv)")
    console.print(table)
