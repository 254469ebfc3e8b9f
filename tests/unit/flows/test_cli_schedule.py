"""`genegate schedule serve` and `schedule add --serve`: what is refused before anything is served.

Serving itself (registering with a real server, a run triggered and delivered) is in
tests/integration/test_prefect_server.py. Here every refusal is exit 2 with one line, before any
deployment is registered and, for `add --serve`, before prefect.yaml changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from flows.cli import run
from flows.errors import UsageProblem
from flows.schedule import pending_releases, served_entries
from keys import Keystore, Passphrase
from tests.support.releases import RELEASE_NAME, assessed_summary_release, register_partner
from transfer import Delivery

PASS = Passphrase("correct horse battery")
CH = "ch-zurich"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A keystore with the Swiss partner, a prefect.yaml with its partner-sync deployment, a server URL
    and the passphrase in the environment; cwd in tmp_path."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS.reveal())
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached: refused first
    monkeypatch.chdir(tmp_path)
    assert 0 == run(["keys", "init"])
    register_partner(Keystore(tmp_path / "ks"), PASS, CH, "CH", "eu-central-2", (tmp_path / "out").as_uri())
    assert 0 == run(["schedule", "add", CH, "--cron", "0 2 * * 1"])
    return tmp_path


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = run(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


@pytest.mark.parametrize(
    ("unset", "needle"),
    [("PREFECT_API_URL", "set $PREFECT_API_URL"), ("GENEGATE_PASSPHRASE", "set $GENEGATE_PASSPHRASE")],
)
def test_serve_needs_a_server_and_the_passphrase(
    lab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], unset: str, needle: str
) -> None:
    """Without a Prefect server or the passphrase a served run could never succeed: exit 2, one line."""
    monkeypatch.delenv(unset)
    code, lines = _refusal(["schedule", "serve"], capsys)
    assert (2, 1, True) == (code, len(lines), needle in lines[0])


def test_add_with_serve_that_cannot_serve_leaves_prefect_yaml_as_it_was(
    lab: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`schedule add --serve` without a server exits 2 and does not write the new schedule."""
    before = (lab / "prefect.yaml").read_bytes()
    monkeypatch.delenv("PREFECT_API_URL")
    code, lines = _refusal(["schedule", "add", CH, "--cron", "30 1 * * *", "--serve"], capsys)
    assert (2, 1, before) == (code, len(lines), (lab / "prefect.yaml").read_bytes())


def test_serve_names_a_deployment_the_file_lacks(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _refusal(["schedule", "serve", "partner-sync/nobody"], capsys)
    assert (2, 1) == (code, len(lines))
    assert "no deployment partner-sync/nobody" in lines[0]
    assert f"partner-sync/{CH}" in lines[0]


def test_serve_refuses_a_recipient_the_keystore_does_not_know(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment whose recipient was removed from (or never in) the registry fails now, not at 02:00."""
    doc = yaml.safe_load((lab / "prefect.yaml").read_text(encoding="utf-8"))
    doc["deployments"][0]["parameters"]["recipient"] = "jp-nowhere"
    (lab / "prefect.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, lines = _refusal(["schedule", "serve"], capsys)
    assert (2, 1) == (code, len(lines))
    assert f"deployment partner-sync/{CH}" in lines[0]
    assert "parameters.recipient" in lines[0]


def test_serve_without_a_file_says_how_to_write_one(lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _refusal(["schedule", "serve", "--file", str(lab / "none.yaml")], capsys)
    assert (2, 1, True) == (code, len(lines), "genegate schedule add" in lines[0])


def test_served_entries_are_genegate_flows_only(tmp_path: Path) -> None:
    """By default every partner-sync and retention deployment; a foreign flow is never served by name."""
    doc = {
        "deployments": [
            {"name": "a", "flow_name": "partner-sync", "entrypoint": "flows/pipeline.py:partner_sync"},
            {"name": "daily", "flow_name": "retention", "entrypoint": "flows/lifecycle.py:retention"},
            {"name": "x", "flow_name": "etl", "entrypoint": "etl.py:main"},
        ]
    }
    file = tmp_path / "prefect.yaml"
    assert ["partner-sync/a", "retention/daily"] == _names(served_entries(doc, [], file))
    assert ["retention/daily"] == _names(served_entries(doc, ["retention/daily", "retention/daily"], file))
    with pytest.raises(UsageProblem, match="etl/x is not a genegate flow"):
        served_entries(doc, ["etl/x"], file)
    with pytest.raises(UsageProblem, match="no genegate deployment"):
        served_entries({"deployments": doc["deployments"][2:]}, [], file)


def _names(entries: list[dict[str, str]]) -> list[str]:
    return [f"{e['flow_name']}/{e['name']}" for e in entries]


def test_partner_sync_offers_certified_releases_not_made_for_another_partner(tmp_path: Path) -> None:
    """A certified release is pending for a partner until the log shows it delivered there; one made
    for another partner (`deid --for`, recorded in release.json) is never offered to this one."""
    store = assessed_summary_release(tmp_path, PASS)
    release = tmp_path / "releases" / RELEASE_NAME
    doc = json.loads((release / "release.json").read_text(encoding="utf-8"))
    seen = []
    for made_for in (None, "jp-tokyo", CH):
        if made_for is not None:
            doc["for_recipient"] = made_for
            (release / "release.json").write_text(json.dumps(doc), encoding="utf-8")
        seen.append(pending_releases(tmp_path / "releases", store.home, [], CH))
    delivered = [Delivery(doc["release_id"], CH, None)]
    seen.append(pending_releases(tmp_path / "releases", store.home, delivered, CH))
    assert [[release], [], [release], []] == seen
