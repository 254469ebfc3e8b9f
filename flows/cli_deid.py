"""`genegate deid` and `genegate policy show | check`.

With --flow (or $PREFECT_API_URL set) `deid` runs as the Prefect flow `deidentify` and prints the
same record; the passphrase then comes from $GENEGATE_PASSPHRASE only (flows/console.py).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.console import (
    FlowFlag,
    err,
    flow_requested,
    out,
    passphrase,
    require_flow_passphrase,
    run_flow,
    settings,
)
from flows.errors import UsageProblem
from keys import ConsentRegister, Keystore, Vault, WrapMode

policy_app = typer.Typer(help="Show and check de-identification policies.", no_args_is_help=True)


@policy_app.command("show")
def show(name: Annotated[str, typer.Argument(help="safe-harbor, cgipa or gdpr-pseudonymised.")]) -> None:
    """Print a built-in profile as TOML, to copy and adapt."""
    from deid import builtin_text

    out.print(builtin_text(name), markup=False, end="")


@policy_app.command("check")
def check(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="Policy TOML file.")]) -> None:
    """Validate a policy file (keys, actions, the profile's floor); exit 2 naming the first problem."""
    from deid import load_policy, policy_summary

    policy = load_policy(str(file))
    summary = {**policy_summary(policy), "retention": policy.retention.as_dict()}
    if settings(ctx).json:
        out.print_json(json.dumps(summary))
    else:
        out.print(f"ok: {policy.name} (profile {policy.profile}, {policy.digest})", markup=False)


def register_deid_commands(app: typer.Typer) -> None:
    """Add `deid` to the top-level app."""

    @app.command()
    def deid(
        ctx: typer.Context,
        manifest: Annotated[Path, typer.Option(help="Sample manifest: CSV, TSV or Parquet.")],
        policy: Annotated[str, typer.Option(help="Policy TOML file or built-in profile name.")],
        out_dir: Annotated[Path, typer.Option("--out", help="Directory that holds releases.")],
        release_id: Annotated[str | None, typer.Option(help="Release id (default: rel-DATE-RANDOM).")] = None,
        summary_only: Annotated[
            bool, typer.Option("--summary-only", help="Release only aggregate allele frequencies.")
        ] = False,
        as_flow: FlowFlag = False,
        purge_inputs: Annotated[
            bool,
            typer.Option(
                "--purge-inputs",
                help="Remove the identified inputs (the manifest and the files it names) once "
                "`genegate assess` certifies the release.",
            ),
        ] = False,
        for_recipient: Annotated[
            str | None,
            typer.Option(
                "--for",
                metavar="RECIPIENT",
                help="Make the release for one partner: only subjects whose consent_transfer names it "
                '(or "*") are included.',
            ),
        ] = None,
    ) -> None:
        """De-identify a manifest and its genomic files into DIR/<release_id>/."""
        from deid import deidentify, load_policy, run_jobs
        from flows.synth_view import progress_bars
        from transfer import record_release

        if not manifest.is_file():
            raise UsageProblem(f"--manifest {manifest}: no such file")
        chosen = load_policy(policy)
        store = Keystore(settings(ctx).home)
        needs_passphrase = store.config().wrap_mode is WrapMode.LAB_KEY
        if flow_requested(as_flow):
            if needs_passphrase:
                require_flow_passphrase()
            options = {"release_id": release_id, "summary_only": summary_only}
            options |= {"for_recipient": for_recipient, "purge_inputs": purge_inputs}
            record = _deid_flow(ctx, manifest, policy, out_dir, options)  # the task records the inputs
            _print_release(ctx, record, chosen.name, out_dir / record["release_id"])
            return
        wrapper = store.vault_wrapper(passphrase() if needs_passphrase else None)
        vault = Vault(store.home, chosen.vault_domain, wrapper)
        revoked = ConsentRegister(
            store.home, wrapper
        ).revocations()  # the lab's register, not only the manifest
        with progress_bars(err, enabled=not settings(ctx).json) as progress:
            result = deidentify(
                manifest,
                chosen,
                out_dir,
                vault,
                release_id=release_id,
                summary_only=summary_only,
                ledger=store.home / "ledger",
                revoked_subjects=set(revoked),
                for_recipient=for_recipient,
                job_runner=partial(run_jobs, progress=progress),
            )
        record_release(store.home, wrapper, result.path, result.inputs, purge=purge_inputs)
        _print_release(ctx, result.record, chosen.name, result.path)


def _deid_flow(
    ctx: typer.Context, manifest: Path, policy: str, out_dir: Path, options: dict[str, Any]
) -> dict[str, Any]:
    """Run the `deidentify` flow (flows/pipeline.py); the release.json it wrote."""
    from flows.pipeline import deidentify as deidentify_flow

    opts = settings(ctx)
    release = run_flow(
        deidentify_flow,
        opts.verbose,
        manifest=str(manifest),
        policy=policy,
        out=str(out_dir),
        home=str(opts.home),
        **options,
    )
    record: dict[str, Any] = json.loads((Path(release["path"]) / "release.json").read_text(encoding="utf-8"))
    return record


def _print_release(ctx: typer.Context, record: dict[str, Any], policy_name: str, path: Path) -> None:
    """The release record as JSON, or its counts on stderr and its path on stdout."""
    if settings(ctx).json:
        out.print_json(json.dumps(record))
        return
    counts = record["counts"]
    err.print(
        f"released {counts['included_samples']} of {counts['manifest_rows']} samples "
        f"(excluded: {record['excluded'] or 'none'}) under {policy_name}",
        markup=False,
    )
    out.print(str(path), markup=False)
