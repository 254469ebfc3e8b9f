"""Scheduled partner transfers: the `partner-sync/<recipient>` deployments of prefect.yaml (SPEC.md 8).

A deployment runs the `partner-sync` flow (flows/pipeline.py) for one recipient on a cron schedule.
Each run sends every certified release under the releases directory (transfer.certified: passed,
or pseudonymised with no leak-test failure) that the transfer log does not record as delivered to
that recipient, except a release made for another partner (`deid --for`); the gate still decides
each one.
`genegate schedule add RECIPIENT --cron "0 2 * * 1"` writes or replaces the recipient's entry;
`prefect deploy --prefect-file prefect.yaml --all` registers them, and a worker of the pool runs them.

The document functions are pure (dict in, dict out); `write_prefect_yaml` writes atomically.
Parameters are paths and ids only: the worker reads $GENEGATE_PASSPHRASE from its environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML comes with prefect; no stubs installed
from prefect.client.schemas.schedules import CronSchedule
from pydantic import ValidationError

from flows.errors import UsageProblem
from keys import write_atomic
from transfer import Delivery, FactsError, certified, load_release_facts

FLOW_NAME = "partner-sync"
ENTRYPOINT = "flows/pipeline.py:partner_sync"
DEFAULT_POOL = "genegate"
_RECIPIENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_cron(cron: str, timezone: str) -> CronSchedule:
    """The schedule, or UsageProblem naming the option that Prefect cannot read."""
    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0]) if exc.errors() else "cron"
        option = "--timezone" if field == "timezone" else "--cron"
        raise UsageProblem(
            f"{option}: Prefect cannot read it; give five cron fields (e.g. '0 2 * * 1') and an "
            "IANA time zone (e.g. Europe/Zurich)"
        ) from None


def deployment_entry(
    recipient: str, schedule: CronSchedule, releases: Path, home: Path, pool: str = DEFAULT_POOL
) -> dict[str, Any]:
    """The prefect.yaml entry of partner-sync/<recipient>."""
    if not _RECIPIENT.match(recipient):
        raise UsageProblem(
            "RECIPIENT: a recipient id is 1-63 lowercase letters, digits and dashes (`genegate keys list`)"
        )
    return {
        "name": recipient,
        "description": f"Send new certified releases to {recipient}",
        "flow_name": FLOW_NAME,
        "entrypoint": ENTRYPOINT,
        "tags": ["genegate", "partner-sync"],
        "parameters": {"recipient": recipient, "releases": str(releases), "home": str(home)},
        "schedules": [{"cron": schedule.cron, "timezone": schedule.timezone or "UTC", "active": True}],
        "concurrency_limit": 1,
        "work_pool": {"name": pool, "work_queue_name": None, "job_variables": {}},
    }


def with_deployment(doc: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """doc (a prefect.yaml document, or None for a new one) with entry added or replacing its namesake.

    A new document has no pull step: `prefect deploy` then runs the flows from the directory it was
    called in, where flows/pipeline.py is."""
    base: dict[str, Any] = dict(doc or {})
    base.setdefault("name", "genegate")
    base.setdefault("prefect-version", "3.8.8")
    current = base.get("deployments") or []
    if not isinstance(current, list):
        raise UsageProblem("prefect.yaml: `deployments` is not a list; fix or remove the file")
    kept = [d for d in current if not (isinstance(d, dict) and _same(d, entry))]
    base["deployments"] = [*kept, entry]
    return base


def _same(existing: dict[str, Any], entry: dict[str, Any]) -> bool:
    return bool(existing.get("name") == entry["name"] and existing.get("entrypoint") == entry["entrypoint"])


def read_prefect_yaml(path: Path) -> dict[str, Any] | None:
    """The document at path, None when there is no file; UsageProblem when it is not a YAML mapping."""
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise UsageProblem(f"{path}: not readable YAML; fix or remove it") from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise UsageProblem(f"{path}: not a prefect.yaml mapping; fix or remove it")
    return doc


def write_prefect_yaml(path: Path, doc: dict[str, Any]) -> None:
    """Write doc to path through a temporary file renamed into place (a project file: mode 0644)."""
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode("utf-8"), 0o644)


def served_entries(doc: dict[str, Any], names: Sequence[str], file: Path) -> list[dict[str, Any]]:
    """The deployments of doc that `genegate schedule serve` serves: those named `flow/name` (all of
    genegate's when names is empty); UsageProblem for a name the file lacks, an entry that is not a
    genegate flow, or no deployment at all."""
    from flows.lifecycle import ENTRYPOINT as RETENTION

    entries = [d for d in doc.get("deployments") or [] if isinstance(d, dict)]
    ours = {f"{d.get('flow_name')}/{d.get('name')}": d for d in entries}
    if not names:
        chosen = [d for d in ours.values() if d.get("entrypoint") in (ENTRYPOINT, RETENTION)]
        if not chosen:
            raise UsageProblem(
                f"{file}: no genegate deployment to serve; add one with `genegate schedule add`"
            )
        return chosen
    missing = [n for n in names if n not in ours]
    if missing:
        raise UsageProblem(
            f"{file}: no deployment {missing[0]}; name one as flow/name ({', '.join(sorted(ours)) or 'none'})"
        )
    foreign = [n for n in names if ours[n].get("entrypoint") not in (ENTRYPOINT, RETENTION)]
    if foreign:
        raise UsageProblem(
            f"{file}: {foreign[0]} is not a genegate flow (partner-sync, retention); serve it with Prefect"
        )
    return [ours[n] for n in dict.fromkeys(names)]


def pending_releases(
    releases: Path, home: Path, deliveries: Iterable[Delivery] | None, recipient: str
) -> list[Path]:
    """Release directories under releases/ that the assessment certifies (transfer.certified: the
    gate's own test) and that the transfer log does not record as delivered to recipient, in name
    order; a release made for another partner (`deid --for`) is not offered. Unreadable or
    unassessed ones are left out. The gate still decides each one."""
    if not releases.is_dir():
        return []
    delivered = {d.release_id for d in deliveries or () if d.recipient_id == recipient}
    pending = []
    for path in sorted(p for p in releases.iterdir() if (p / "release.json").is_file()):
        try:
            facts = load_release_facts(path, home)
        except FactsError:
            continue  # not a release the gate could pass; `genegate transfer --dry-run` says why
        meant = facts.for_recipient in (None, recipient)
        if meant and certified(facts) and facts.release_id not in delivered:
            pending.append(path)
    return pending
