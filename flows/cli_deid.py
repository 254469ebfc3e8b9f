"""`genegate deid` and `genegate policy show | check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.console import err, out, passphrase, settings
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
    summary = policy_summary(policy)
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
    ) -> None:
        """De-identify a manifest and its genomic files into DIR/<release_id>/."""
        from deid import deidentify, load_policy

        if not manifest.is_file():
            raise UsageProblem(f"--manifest {manifest}: no such file")
        chosen = load_policy(policy)
        store = Keystore(settings(ctx).home)
        needs_passphrase = store.config().wrap_mode is WrapMode.LAB_KEY
        wrapper = store.vault_wrapper(passphrase() if needs_passphrase else None)
        vault = Vault(store.home, chosen.vault_domain, wrapper)
        revoked = ConsentRegister(
            store.home, wrapper
        ).revocations()  # the lab's register, not only the manifest
        result = deidentify(
            manifest,
            chosen,
            out_dir,
            vault,
            release_id=release_id,
            summary_only=summary_only,
            ledger=store.home / "ledger",
            revoked_subjects=set(revoked),
        )
        if settings(ctx).json:
            out.print_json(json.dumps(result.record))
            return
        counts = result.record["counts"]
        err.print(
            f"released {counts['included_samples']} of {counts['manifest_rows']} samples "
            f"(excluded: {result.record['excluded'] or 'none'}) under {chosen.name}",
            markup=False,
        )
        out.print(str(result.path), markup=False)
