"""How `genegate synth` and the demo show progress and what they made (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as ProgressBars
from rich.table import Table

from deid.synth import CohortSummary, Progress, no_progress


@contextmanager
def synth_progress(console: Console, enabled: bool) -> Iterator[Progress]:
    """A progress callback for synthesize_cohort: one bar per stage (genotypes, reads)."""
    if not enabled or not console.is_terminal:
        yield no_progress
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
