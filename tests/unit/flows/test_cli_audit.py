"""`genegate audit verify | list | export | report` on a real keystore and a signed log."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows import console
from flows.cli import run
from keys import Keystore, Passphrase
from transfer import TRANSFER_LOG, TransferLog

PASS = "correct horse battery"
SHA = "cd" * 32
DAYS = (dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC), dt.datetime(2025, 2, 3, 9, tzinfo=dt.UTC))


def _entry(
    event: str, recipient: str, country: str, size: int = 0, failed: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "release_id": "rel-1", "release_sha256": SHA, "recipient_id": recipient,
                            "destination": {"country": country, "uri": f"s3://{recipient}-inbox/in"}}  # fmt: skip
    if failed is not None:
        body["decision"] = {"allowed": False, "decision": "denied", "failed_rules": failed}
    if size:
        body["files"] = [
            {"name": "cohort.vcf.gz", "plaintext_sha256": SHA, "ciphertext_sha256": SHA, "bytes": size}
        ]
    return body


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A keystore and a log of five entries: deliveries to CH and GB, two denials for a US recipient."""
    monkeypatch.setenv("GENEGATE_PASSPHRASE", PASS)
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "ks"))
    assert 0 == run(["keys", "init"])
    home = tmp_path / "ks"
    key = Keystore(home).signing_key(Passphrase(PASS))
    stamps = iter([DAYS[0], DAYS[0], DAYS[1], DAYS[1], DAYS[1]])
    log = TransferLog(home / TRANSFER_LOG, clock=lambda: next(stamps))
    log.append(_entry("transfer.delivered", "ch-zurich", "CH", 5000), key)
    log.append(
        _entry("transfer.denied", "us-boston", "US", failed=["origin.eu_eea", "doj.bulk_us_genomic"]), key
    )
    log.append(_entry("transfer.delivered", "uk-oxford", "GB", 3 * 2**20), key)
    log.append(_entry("transfer.denied", "us-boston", "US", failed=["origin.eu_eea"]), key)
    log.append(_entry("transfer.unchanged", "ch-zurich", "CH"), key)
    capsys.readouterr()
    return home


def _tamper(home: Path, edit: Any) -> None:
    path = home / TRANSFER_LOG
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_verify_untouched_log_exits_0(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An untouched log: exit 0 and `ok: 5 entries`."""
    assert 0 == run(["audit", "verify"])
    assert capsys.readouterr().out.startswith("ok: 5 entries")


@pytest.mark.parametrize(
    ("edit", "first_bad", "why"),
    [
        (lambda ls: [*ls[:2], ls[2].replace(b"uk-oxford", b"uk-oxfort"), *ls[3:]], 3, "a field was edited"),
        (lambda ls: [ls[0], *ls[2:]], 2, "deleted, duplicated or moved"),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, "deleted, duplicated or moved"),
        (lambda ls: [*ls, ls[4]], 6, "deleted, duplicated or moved"),
        (lambda ls: ls[:4], 5, "entries were removed"),
        (lambda ls: [*ls[:4], ls[4][:40]], 5, "cut short"),
    ],
    ids=["edited-field", "deleted", "reordered", "duplicated", "truncated-at-line", "torn-line"],
)
def test_verify_names_the_first_bad_entry(
    home: Path, capsys: pytest.CaptureFixture[str], edit: Any, first_bad: int, why: str
) -> None:
    """Each tampering exits 1; --json names the first bad entry and why."""
    _tamper(home, edit)
    assert 1 == run(["audit", "verify", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (False, first_bad) == (doc["ok"], doc["first_bad"])
    assert why in doc["reason"]
    assert 1 == run(["audit", "verify"])
    assert f"entry {first_bad} is bad" in capsys.readouterr().err


def test_verify_with_another_keystore_fails(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked against another lab's signing key, entry 1 is reported as signed by another key."""
    monkeypatch.setenv("GENEGATE_HOME", str(tmp_path / "other"))
    assert 0 == run(["keys", "init"])
    capsys.readouterr()
    assert 1 == run(["audit", "verify", "--log", str(home / TRANSFER_LOG), "--json"])
    assert "signed by another key" in json.loads(capsys.readouterr().out)["reason"]


def test_verify_without_a_log_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No log at --log: exit 2 with one line naming the path and the fix."""
    assert 2 == run(["audit", "verify", "--log", str(tmp_path / "none.jsonl")])
    assert "no transfer log at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("filters", "seqs"),
    [
        ([], [1, 2, 3, 4, 5]),
        (["--recipient", "ch-zurich"], [1, 5]),
        (["--denied"], [2, 4]),
        (["--country", "gb"], [3]),
        (["--since", "2025-02-01"], [3, 4, 5]),
        (["--denied", "--since", "2025-02-01"], [4]),
    ],
)
def test_list_filters(
    home: Path, capsys: pytest.CaptureFixture[str], filters: list[str], seqs: list[int]
) -> None:
    """audit list --json returns the entries every filter admits."""
    assert 0 == run(["audit", "list", *filters, "--json"])
    assert seqs == [e["seq"] for e in json.loads(capsys.readouterr().out)]


def test_list_table_and_bad_date(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table names the failed rules of a denial; a malformed --since is bad input."""
    monkeypatch.setattr(console.out, "width", 200)
    assert 0 == run(["audit", "list", "--denied"])
    assert "origin.eu_eea, doj.bulk_us_genomic" in capsys.readouterr().out
    assert 2 == run(["audit", "list", "--since", "last week"])


def test_export_parquet_one_row_per_entry(home: Path, tmp_path: Path) -> None:
    """The Parquet file holds one row per entry; nested values are JSON text; bytes are summed."""
    out = tmp_path / "log.parquet"
    assert 0 == run(["audit", "export", "--parquet", str(out)])
    table = pq.read_table(out)
    assert [1, 2, 3, 4, 5] == table.column("seq").to_pylist()
    assert [5000, 0, 3 * 2**20, 0, 0] == table.column("total_bytes").to_pylist()
    assert ["CH", "US", "GB", "US", "CH"] == table.column("destination_country").to_pylist()
    assert ["origin.eu_eea"] == json.loads(table.column("decision").to_pylist()[3])["failed_rules"]
    assert dt.datetime(2025, 1, 10, 9, tzinfo=dt.UTC) == table.column("timestamp").to_pylist()[0]


class _Page(HTMLParser):
    """Counts what a reviewer sees: plots and their bars, sections, scripts and remote references."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _report(home: Path, tmp_path: Path) -> tuple[Path, _Page]:
    out = tmp_path / "report.html"
    assert 0 == run(["audit", "report", "--html", str(out)])
    page = _Page()
    page.feed(out.read_text(encoding="utf-8"))
    page.close()
    return out, page


def test_report_is_self_contained_with_three_plots(home: Path, tmp_path: Path) -> None:
    """The page (checked with html.parser) has 3 SVG plots with bars, a verified banner, no script or remote URL."""
    out, page = _report(home, tmp_path)
    plots = [a for t, a in page.tags if t == "svg" and a.get("class") == "plot"]
    assert ["deliveries per day", "denials", "bytes"] == [a["aria-label"] for a in plots]
    bars = [a for t, a in page.tags if t == "rect" and a.get("class") == "bar"]
    assert 2 + 2 + 2 == len(bars)  # two delivery days, two failed rules, two recipients with bytes
    assert [] == [t for t, _ in page.tags if t in ("script", "link", "img", "iframe")]
    text = out.read_text(encoding="utf-8")
    assert "Chain and signatures verified: 5 entries." in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_of_a_tampered_log_says_so(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report of a log with an entry removed opens with the failed verification."""
    _tamper(home, lambda ls: [ls[0], *ls[2:]])
    out, _ = _report(home, tmp_path)
    assert "VERIFICATION FAILED at entry 2" in out.read_text(encoding="utf-8")
    assert "does not verify" in capsys.readouterr().err


BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
PROBE = (
    "<script>document.body.setAttribute('data-plots', JSON.stringify([...document.querySelectorAll('svg.plot')]"
    ".map(s => {const r = s.getBoundingClientRect(); return [Math.round(r.width) > 100, Math.round(r.height) > 30,"
    " s.querySelectorAll('rect.bar').length]})))</script>"
)


@pytest.mark.skipif(
    BROWSER is None, reason="no headless Chromium (Debian: apt-get install chromium-headless-shell)"
)
def test_report_renders_in_headless_chromium(home: Path, tmp_path: Path) -> None:
    """Chromium lays out the three plots with their bars (a probe script is added to a copy of the page)."""
    out, _ = _report(home, tmp_path)
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    argv = [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    parser = _Page()
    parser.feed(dom)
    found = next(a["data-plots"] for t, a in parser.tags if t == "body" and a.get("data-plots"))
    assert [[True, True, 2], [True, True, 2], [True, True, 2]] == json.loads(str(found))


def test_impact_needs_a_filter_and_counts_a_recipient(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No filter is bad input; --recipient counts its deliveries (not the denials, not `unchanged`)."""
    assert 2 == run(["audit", "impact"])
    assert "name what was breached" in capsys.readouterr().err
    assert 0 == run(["--json", "audit", "impact", "--recipient", "ch-zurich"])
    doc = json.loads(capsys.readouterr().out)
    assert (True, 1, 1, 5000, ["rel-1"], ["rel-1"]) == (
        doc["log"]["verified"], doc["transfers"], doc["files"], doc["bytes"], doc["releases"], doc["missing_ledgers"]
    )  # fmt: skip


def test_impact_of_a_tampered_log_says_unverified_and_exits_1(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log that does not verify: the figures come with a loud warning, the HTML banner, exit 1."""
    _tamper(home, lambda ls: [ls[0], *ls[2:]])
    out = tmp_path / "impact.html"
    assert 1 == run(["audit", "impact", "--since", "2025-01-01", "--html", str(out)])
    captured = capsys.readouterr()
    assert "the figures below are UNVERIFIED" in captured.err
    assert "UNVERIFIED" in captured.out
    page = out.read_text(encoding="utf-8")
    assert ("VERIFICATION FAILED at entry 2" in page, "<script" in page) == (True, False)
