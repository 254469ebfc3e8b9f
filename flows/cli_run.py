"""`genegate run release-and-share`: the whole chain as one Prefect flow (schedules: flows/cli_schedule.py).

Runs against the Prefect API in $PREFECT_API_URL, or an ephemeral local one when it is unset
(a few seconds to start). The passphrase comes from $GENEGATE_PASSPHRASE only: the flow's tasks
read it there, and a flow run never prompts. Exit codes: 0 every recipient the gate allowed was
delivered (or already held the release), 3 the gate denied every recipient, 1 a delivery failed,
2 bad input.

`--runner dask` runs the per-file de-identification tasks on a Dask cluster (prefect-dask): the
scheduler at `--dask-address tcp://host:port`, or a LocalCluster of two worker processes started
for the run. Workers need the lab's filesystem at the same paths (flows.runners).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.console import PASSPHRASE_ENV, err, out, private_prefect_storage, settings
from flows.errors import UsageProblem
from flows.runners import Runner

EXIT_FAILURE = 1
EXIT_DENIED = 3

run_app = typer.Typer(help="Run a whole pipeline as a Prefect flow.", no_args_is_help=True)


def register_run_commands(app: typer.Typer) -> None:
    """Add the `run` group to the top-level app."""
    app.add_typer(run_app, name="run")


@run_app.command("release-and-share")
def release_and_share_command(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Option(help="Identified sample manifest: CSV, TSV or Parquet.")],
    policy: Annotated[str, typer.Option(help="Policy TOML file or built-in profile name.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient id from the registry; repeat for more.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory that holds releases.")] = Path("releases"),
    results: Annotated[
        Path, typer.Option("--results", help="Parquet re-identification results (appended to).")
    ] = Path("results"),
    summary_only: Annotated[
        bool, typer.Option("--summary-only", help="Release only aggregate allele frequencies.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the tests that sample or simulate.")] = 0,
    for_recipient: Annotated[
        str | None,
        typer.Option(
            "--for",
            metavar="RECIPIENT",
            help='Make the release for one partner: only subjects whose consent_transfer names it (or "*").',
        ),
    ] = None,
    purge_inputs: Annotated[
        bool,
        typer.Option(
            "--purge-inputs", help="Remove the identified inputs once the assessment certifies the release."
        ),
    ] = False,
    runner: Annotated[
        Runner,
        typer.Option("--runner", help="Where the per-file tasks run: local threads or a Dask cluster."),
    ] = Runner.LOCAL,
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address",
            help="Dask scheduler tcp://host:port (with --runner dask; default: a local cluster for the run).",
        ),
    ] = None,
) -> int:
    """De-identify, assess, then send to each recipient the gate allows (denied ones are skipped)."""
    if not manifest.is_file():
        raise UsageProblem(f"--manifest {manifest}: no such file")
    if PASSPHRASE_ENV not in os.environ:
        raise UsageProblem(f"no passphrase: set ${PASSPHRASE_ENV}; a flow run never prompts")
    opts = settings(ctx)
    from flows.pipeline import DeliveryFailed, release_and_share
    from flows.runners import task_runner

    private_prefect_storage()
    try:
        with task_runner(runner, dask_address) as chosen:
            summary = release_and_share.with_options(task_runner=chosen)(
                str(manifest.resolve()),
                policy,
                list(dict.fromkeys(to)),
                str(out_dir.resolve()),
                str(results.resolve()),
                str(opts.home.resolve()),
                summary_only,
                seed,
                for_recipient,
                purge_inputs,
            )
    except DeliveryFailed as exc:
        err.print(f"genegate: error: {' '.join(str(exc).split())}", markup=False, soft_wrap=True)
        return EXIT_FAILURE
    if opts.json:
        out.print_json(json.dumps(summary))
    else:
        _print_summary(summary)
    return exit_code(summary["sends"])


def exit_code(sends: list[dict[str, Any]]) -> int:
    """0 when every recipient not denied got the release, 3 when the gate denied all of them, else 1."""
    outcomes = [s["outcome"] for s in sends]
    if outcomes and all(o == "denied" for o in outcomes):
        return EXIT_DENIED
    return 0 if all(o in ("delivered", "unchanged", "denied") for o in outcomes) else EXIT_FAILURE


def _print_summary(summary: dict[str, Any]) -> None:
    failed = ", ".join(summary["blocking_failed"]) or "none"
    err.print(
        f"release {summary['release_id']}: {summary['included']} of {summary['rows']} samples; assessment "
        f"{summary['status']}, class {summary['class']} (blocking failures: {failed})",
        markup=False,
        soft_wrap=True,
    )
    for send in summary["sends"]:
        if send["outcome"] == "denied":
            line = f"{send['recipient_id']}: denied ({'; '.join(send['reasons'])})"
        else:
            line = f"{send['recipient_id']}: {send['outcome']} to {send['destination']}"
        err.print(line, markup=False, soft_wrap=True)
    out.print(summary["release"], markup=False)
