"""`genegate assess`: run the re-identification tests on a release (SPEC.md 4).

Exit codes: 0 every blocking test passed, 1 a blocking test failed, 2 bad input (one line). With
--flow (or $PREFECT_API_URL set) it runs as the Prefect flow `assess`, printing and exiting the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from flows.cli_retention import purge_after_assessment
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
from flows.receipts import log_destruction_receipt

EXIT_BLOCKED = 1
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the outcome as JSON (same as the global --json).")
]


def register_assess_commands(app: typer.Typer) -> None:
    """Add `assess` to the top-level app."""

    @app.command("assess")
    def assess_command(
        ctx: typer.Context,
        release: Annotated[Path, typer.Argument(help="The release directory (releases/<id>).")],
        identified: Annotated[
            Path, typer.Option("--identified", help="The identified manifest the release was made from.")
        ],
        results: Annotated[
            Path, typer.Option("--results", help="Parquet results dataset (appended to).")
        ] = Path("results"),
        policy: Annotated[
            str | None,
            typer.Option("--policy", help="Policy TOML or built-in profile (default: the release's policy)."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the tests that sample or simulate.")] = 0,
        json_output: JsonFlag = False,
        as_flow: FlowFlag = False,
    ) -> int:
        """Run the re-identification tests on a release; results to Parquet, class to release.json."""
        from deid import load_policy
        from deid.reid.runner import assess

        if not (release / "release.json").is_file():
            raise UsageProblem(f"{release}: not a release directory (no release.json); give releases/<id>")
        if not identified.is_file():
            raise UsageProblem(f"--identified {identified}: no such file")
        chosen = load_policy(policy) if policy is not None else None
        if flow_requested(as_flow):  # the flow's task logs the receipt and purges itself
            outcome, logged = _assess_flow(ctx, release, identified, results, policy, seed)
            purged = outcome.get("inputs_purged")
        else:
            outcome = assess(release, identified, results, chosen, seed=seed).as_dict()
            logged = _log_receipt(settings(ctx).home, release, outcome)
            purged = purge_after_assessment(settings(ctx).home, release, outcome["status"])
        if purged is not None:  # deid --purge-inputs: the identified inputs go once certified
            outcome = {**outcome, "inputs_purged": purged}
            err.print(
                f"identified inputs removed: {purged['files']} files, {purged['bytes']} bytes", markup=False
            )
        if settings(ctx).json or json_output:
            out.print_json(json.dumps(outcome))
        else:
            _print_outcome(outcome, logged)
        return 0 if outcome["status"] == "passed" else EXIT_BLOCKED


def _assess_flow(
    ctx: typer.Context, release: Path, identified: Path, results: Path, policy: str | None, seed: int
) -> tuple[dict[str, Any], bool]:
    """Run the `assess` flow (flows/pipeline.py); its outcome, and whether it logged the receipt."""
    from flows.pipeline import assess as assess_flow
    from keys import Keystore

    opts = settings(ctx)
    logged = Keystore(opts.home).exists()  # the flow's task logs the receipt when there is a keystore
    if logged:
        require_flow_passphrase()
    outcome = run_flow(
        assess_flow,
        opts.verbose,
        release=str(release),
        manifest=str(identified),
        results=str(results),
        home=str(opts.home),
        seed=seed,
        policy=policy,
    )
    return outcome, logged


def _print_outcome(outcome: dict[str, Any], logged: bool) -> None:
    """The metrics table on stdout, the verdict on stderr (outcome: AssessmentResult.as_dict())."""
    table = Table("test", Column("metric", overflow="fold"), "value", "threshold", "pass")
    for m in outcome["metrics"]:
        threshold = "-" if m["threshold"] is None else f"{m['comparator']} {_number(m['threshold'])}"
        verdict = {True: "pass", False: "FAIL", None: m["status"]}[m["passed"]]
        if m["status"] == "error":
            verdict = "ERROR"
        table.add_row(
            m["test_id"].split("_", 1)[0],
            escape(m["metric"]),
            _number(m["value"]),
            threshold,
            verdict if m["severity"] == "block" else f"{verdict} (warn)",
        )
    out.print(table)
    failed = ", ".join(outcome["blocking_failed"]) or "none"
    err.print(
        f"assessment {outcome['status']}: class {outcome['class']}; blocking failures: {failed}; "
        f"results {outcome['results']}; destruction receipt "
        + ("logged" if logged else "not logged (no keystore: run `genegate keys init`)"),
        markup=False,
    )


def _number(value: float | str | None) -> str:
    """A metric's value as AssessmentResult.as_dict gives it: None for NaN, "inf" text for infinity."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "-"
    if math.isinf(value) or value == int(value):
        return str(value) if math.isinf(value) else str(int(value))
    return f"{value:.4g}"


def _log_receipt(home: Path, release: Path, outcome: dict[str, Any]) -> bool:
    """The receipt to the transfer log when there is a keystore to sign with; False when there is none."""
    from keys import Keystore

    store = Keystore(home)
    if not store.exists():
        return False
    log_destruction_receipt(store, release, outcome, passphrase())
    return True
