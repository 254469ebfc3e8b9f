"""`genegate schedule add | serve`: the scheduled deployments of prefect.yaml, written and served.

`schedule add RECIPIENT --cron C` writes (or replaces) the deployment partner-sync/RECIPIENT into
prefect.yaml (flows.schedule); `prefect deploy` registers it and a worker of its pool runs it.
With `--serve`, or with `schedule serve [DEPLOYMENT ...]`, this process serves the deployments
itself instead: it registers them with the Prefect server in $PREFECT_API_URL, keeps their cron
schedules, and runs each scheduled or triggered run here (in a child process) until stopped
(Ctrl-C or SIGTERM; Prefect then pauses their schedules). No work pool, no worker: the simplest
way to keep one lab's transfers on schedule.

Only genegate's own flows are served (partner-sync, retention), loaded by module, so the working
directory does not matter for the code; relative paths in a deployment's parameters are taken
from the working directory, as a worker would. Before anything is registered this checks what a
run would need, so a misconfiguration is one line and exit 2 now rather than a failed run at 02:00:
a server ($PREFECT_API_URL; a temporary one would vanish with this process), $GENEGATE_PASSPHRASE
(runs never prompt), and for partner-sync a recipient the keystore's registry knows. Prefect's
local storage is made private first (a failed run's exception would otherwise be world-readable).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from flows.console import API_URL_ENV, PASSPHRASE_ENV, err, out, private_prefect_storage, settings
from flows.errors import UsageProblem

if TYPE_CHECKING:
    from prefect.flows import Flow

schedule_app = typer.Typer(
    help="Scheduled partner transfers: partner-sync/<recipient> deployments in prefect.yaml.",
    no_args_is_help=True,
)

FileOption = Annotated[Path, typer.Option("--file", help="The prefect.yaml to read or write.")]


def register_schedule_commands(app: typer.Typer) -> None:
    """Add the `schedule` group to the top-level app."""
    app.add_typer(schedule_app, name="schedule")


@schedule_app.command("add")
def schedule_add(
    ctx: typer.Context,
    recipient: Annotated[str, typer.Argument(metavar="RECIPIENT", help="Recipient id from the registry.")],
    cron: Annotated[str, typer.Option("--cron", help="Five cron fields, e.g. '0 2 * * 1' (Mondays 02:00).")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the schedule.")] = "UTC",
    releases: Annotated[Path, typer.Option("--releases", help="Directory that holds releases.")] = Path(
        "releases"
    ),
    file: FileOption = Path("prefect.yaml"),
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool that runs it.")] = "genegate",
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve it from this process (no work pool; until stopped).")
    ] = False,
) -> None:
    """Write (or replace) the deployment partner-sync/RECIPIENT with a cron schedule into prefect.yaml."""
    from flows.schedule import (
        FLOW_NAME,
        check_cron,
        deployment_entry,
        read_prefect_yaml,
        with_deployment,
        write_prefect_yaml,
    )
    from keys import Keystore

    home = settings(ctx).home
    Keystore(home).registry().get(recipient)  # an unknown recipient is bad input (exit 2)
    entry = deployment_entry(recipient, check_cron(cron, timezone), releases.resolve(), home.resolve(), pool)
    name = f"{FLOW_NAME}/{recipient}"
    if serve:
        _require_serving()  # before the file changes: --serve that cannot serve writes nothing
    write_prefect_yaml(file, with_deployment(read_prefect_yaml(file), entry))
    if serve:
        _serve(file, [name])
        return
    if settings(ctx).json:
        out.print_json(json.dumps({"deployment": name, "file": str(file), **entry}))
        return
    err.print(
        f"{name}: '{cron}' ({timezone}) written to {file}; register it with `prefect deploy --prefect-file "
        f"{file} --name {name}` and run it with `prefect worker start --pool {pool}`, or serve it from "
        f"here with `genegate schedule serve {name} --file {file}`",
        markup=False,
        soft_wrap=True,
    )
    out.print(name, markup=False)


@schedule_app.command("serve")
def schedule_serve(
    deployments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[DEPLOYMENT]...",
            help="flow/name, e.g. partner-sync/ch-zurich-genomics (default: every genegate one in the file).",
        ),
    ] = None,
    file: FileOption = Path("prefect.yaml"),
) -> None:
    """Serve prefect.yaml's genegate deployments from this process until stopped (Ctrl-C)."""
    _require_serving()
    _serve(file, deployments or [])


def _require_serving() -> None:
    if not os.environ.get(API_URL_ENV):
        raise UsageProblem(
            f"no Prefect server: set ${API_URL_ENV} (e.g. http://127.0.0.1:4200/api); a served deployment "
            "registers its schedule there, and a temporary server would vanish with this process"
        )
    if PASSPHRASE_ENV not in os.environ:
        raise UsageProblem(f"no passphrase: set ${PASSPHRASE_ENV}; a scheduled run never prompts")


def _serve(file: Path, names: Sequence[str]) -> None:
    """Check and serve the chosen deployments of file (all genegate ones when names is empty)."""
    from flows.schedule import read_prefect_yaml, served_entries

    doc = read_prefect_yaml(file)
    if doc is None:
        raise UsageProblem(f"--file {file}: no such file; write one with `genegate schedule add`")
    entries = served_entries(doc, names, file)
    flows = {entrypoint: _flow(entrypoint) for entrypoint in {e["entrypoint"] for e in entries}}
    for entry in entries:
        _check_parameters(entry, file)
    private_prefect_storage()
    from prefect import serve
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    runnable = [
        cast(
            "RunnerDeployment",
            flows[e["entrypoint"]].to_deployment(
                name=e["name"],
                description=e.get("description"),
                tags=e.get("tags"),
                parameters=e.get("parameters") or {},
                schedules=[
                    Cron(s["cron"], timezone=s.get("timezone") or "UTC", active=s.get("active", True))
                    for s in e.get("schedules") or []
                ],
                concurrency_limit=e.get("concurrency_limit"),
                entrypoint_type=EntrypointType.MODULE_PATH,
            ),
        )  # a RunnerDeployment when called outside an event loop
        for e in entries
    ]
    listed = ", ".join(f"{e['flow_name']}/{e['name']} ({_crons(e)})" for e in entries)
    err.print(
        f"serving {listed} on {os.environ[API_URL_ENV]}; Ctrl-C stops (Prefect pauses their schedules)",
        markup=False,
        soft_wrap=True,
    )
    serve(*runnable, print_starting_message=False)


def _flow(entrypoint: str) -> Flow[..., Any]:
    """genegate's flow behind a prefect.yaml entrypoint (imported, not loaded from a path)."""
    from flows.lifecycle import ENTRYPOINT as RETENTION
    from flows.lifecycle import retention
    from flows.pipeline import partner_sync
    from flows.schedule import ENTRYPOINT as PARTNER_SYNC

    known: dict[str, Flow[..., Any]] = {PARTNER_SYNC: partner_sync, RETENTION: retention}
    return known[entrypoint]


def _check_parameters(entry: dict[str, Any], file: Path) -> None:
    """A partner-sync deployment names a recipient its keystore knows (else exit 2, naming both)."""
    from flows.schedule import ENTRYPOINT as PARTNER_SYNC
    from keys import Keystore, KeyStoreError

    if entry["entrypoint"] != PARTNER_SYNC:
        return
    parameters = entry.get("parameters") or {}
    recipient, home = parameters.get("recipient"), parameters.get("home", ".genegate")
    try:
        Keystore(Path(str(home))).registry().get(str(recipient))
    except KeyStoreError as exc:
        raise UsageProblem(
            f"{file}: deployment partner-sync/{entry['name']}: {exc}; fix its parameters.home or "
            "parameters.recipient"
        ) from None


def _crons(entry: dict[str, Any]) -> str:
    schedules = entry.get("schedules") or []
    return "; ".join(f"{s['cron']} {s.get('timezone') or 'UTC'}" for s in schedules) or "no schedule"
