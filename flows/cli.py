"""The `genegate` command line: parse, call the library, print. No rules live here.

Global options go before the command, as with git: `genegate --json synth --out cohort/`.
Errors print one line on stderr and exit 2 (bad input) or 1 (failure); `--debug` shows the
traceback. Exit codes follow SPEC.md: 0 done, 1 failure, 2 bad input, 3 denied by the gate.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import NoArgsIsHelpError

from deid import DeidError
from flows.cli_assess import register_assess_commands
from flows.cli_audit import register_audit_commands
from flows.cli_crypt import register_crypt_commands
from flows.cli_deid import policy_app, register_deid_commands
from flows.cli_gate import consent_app, register_gate_commands
from flows.cli_keys import keys_app
from flows.cli_release import register_release_commands
from flows.cli_retention import register_retention_commands
from flows.cli_run import register_run_commands
from flows.cli_schedule import register_schedule_commands
from flows.cli_subject import register_subject_commands
from flows.console import Settings, err, out, settings
from flows.errors import NotBuilt, UsageProblem
from keys import KeyStoreError
from transfer import TransferError

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="genegate",
    help="De-identify genomic data, prove it, encrypt it per partner and transfer it lawfully.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
audit_app = typer.Typer(help="Verify, list, export and report the signed transfer log.", no_args_is_help=True)
law_app = typer.Typer(help="The versioned legal tables the transfer gate uses.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
register_crypt_commands(app)
register_deid_commands(app)
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(law_app, name="law")
app.add_typer(consent_app, name="consent")
register_gate_commands(app, law_app)


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        Path,
        typer.Option(envvar="GENEGATE_HOME", help="Keystore and working state directory."),
    ] = Path(".genegate"),
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable output where a command prints a result.")
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output.")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
) -> None:
    """genegate: the lab's gate for sharing human genetic data."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Settings(home=home, json=json_output, verbose=verbose, debug=debug)


@app.command()
def synth(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to create for the cohort.")],
    samples: Annotated[int, typer.Option(help="Number of samples (at least 12).")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same cohort.")] = 1,
    cram: Annotated[
        bool, typer.Option("--cram", help="Write CRAM (reference embedded) instead of BAM.")
    ] = False,
    no_reads: Annotated[
        bool,
        typer.Option("--no-reads", help="Write only the VCF and the manifest (fast, for large cohorts)."),
    ] = False,
) -> None:
    """Make a synthetic *identified* cohort: manifest, joint VCF, BAM/CRAM and FASTQ."""
    from deid.synth import MIN_SAMPLES, CohortSpec, synthesize_cohort
    from flows.synth_view import print_cohort_summary, progress_bars

    opts = settings(ctx)
    if samples < MIN_SAMPLES:
        raise UsageProblem(
            f"--samples {samples}: a cohort needs at least {MIN_SAMPLES} to hold every edge case"
        )
    spec = CohortSpec(out=out_dir, samples=samples, seed=seed, reads=not no_reads, cram=cram)
    with progress_bars(err, enabled=not opts.json) as progress:
        summary = synthesize_cohort(spec, progress)
    if opts.json:
        out.print_json(json.dumps(summary.as_dict()))
        return
    print_cohort_summary(err, summary)
    out.print(str(summary.out))


@app.command()
def demo(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Demo working directory.")] = Path("demo-run"),
    samples: Annotated[int, typer.Option(help="Cohort size.")] = 24,
) -> None:
    """Run every stage that exists, end to end, on a synthetic cohort. No network, no server."""
    from flows.demo import prepare, run_demo
    from flows.synth_view import print_cohort_summary, progress_bars

    opts = settings(ctx)
    try:
        prepare(out_dir)
    except FileExistsError as exc:
        raise UsageProblem(str(exc)) from None
    with progress_bars(err, enabled=not opts.json) as progress:
        report = run_demo(out_dir, samples, progress, lambda line: err.print(f"[bold]{line}[/bold]"))
    if opts.json:
        out.print_json(json.dumps({"out": str(out_dir), "stages": report.stages}, default=str))
        return
    if report.cohort is not None:
        print_cohort_summary(err, report.cohort)
    for line in report.lines:
        err.print(line, markup=False)
    out.print(str(out_dir))


def _not_built(name: str, issue: int, help_text: str, group: typer.Typer = app) -> None:
    """Register a command that exists in the contract but not yet in the code."""

    def command() -> None:
        raise NotBuilt(name, issue)

    command.__doc__ = f"{help_text} [not built yet: issue #{issue}]"
    group.command(
        name=name.rsplit(maxsplit=1)[-1],
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=True,
    )(command)


register_assess_commands(app)
register_run_commands(app)
register_schedule_commands(app)
register_release_commands(app)
register_retention_commands(app)
register_audit_commands(audit_app)
register_subject_commands(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on argv and return the exit code (errors already printed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="genegate", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except typer.Abort:
        err.print("genegate: aborted")
        return 130
    except NoArgsIsHelpError as exc:  # `genegate keys` alone: show that group's help
        err.print(exc.format_message(), markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except Exception as exc:
        message, code = _describe(exc)
        if "--debug" in args:
            traceback.print_exception(exc, file=sys.stderr)
        err.print(
            f"genegate: error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True
        )
        return code
    return result if isinstance(result, int) else 0


def _describe(exc: Exception) -> tuple[str, int]:
    """The one-line message and exit code for an error; never the text of an unexpected one."""
    if isinstance(exc, typer.TyperException):  # click's usage errors: unknown option, missing value
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return exc.format_message() + hint, exc.exit_code
    if isinstance(exc, DeidError | KeyStoreError | TransferError | UsageProblem | NotBuilt):
        return str(exc), EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{where}", EXIT_FAILURE
    # a bug: name its type only, since its message may hold data
    return f"unexpected {type(exc).__name__}; rerun with --debug for the traceback", EXIT_FAILURE


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.exit(run())
