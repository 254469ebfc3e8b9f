"""What reviewers read from the transfer log: filtered lists, a Parquet export and an HTML report.

Pure over entries (the dicts TransferLog.entries returns) except `write_parquet`, which writes
a file. The HTML report is one self-contained page: inline SVG plots drawn here (transfers over
time by destination country, denials by failed rule, bytes by recipient), a verification
banner and the table of entries; no script, no stylesheet or font from the network. Every text
from the log is escaped. The log holds no identifier (SPEC.md 7), so neither does the report.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transfer.errors import TransferLogError
from transfer.log import LogVerification

DENIED = "transfer.denied"
DELIVERED = "transfer.delivered"
PALETTE = ("#1b6ca8", "#e07b39", "#3a9b5c", "#b8433f", "#7d5ba6", "#8c6d46", "#d36fb0", "#6f6f6f")
_SCALAR_COLUMNS = ("event", "release_id", "release_sha256", "recipient_id", "release_class", "flow_run_id")
_JSON_COLUMNS = ("origin_regimes", "decision", "basis", "files", "key_fingerprints", "counts", "receipt")
_CHAIN_COLUMNS = ("prev_hash", "entry_hash", "signed_by", "signature")


def entry_country(entry: Mapping[str, Any]) -> str | None:
    """The destination country of an entry (destination.country, else the decision's)."""
    destination = entry.get("destination")
    if isinstance(destination, dict) and isinstance(destination.get("country"), str):
        return str(destination["country"])
    decision = entry.get("decision")
    if isinstance(decision, dict) and isinstance(decision.get("destination_country"), str):
        return str(decision["destination_country"])
    return None


def is_denied(entry: Mapping[str, Any]) -> bool:
    """A gate denial: event transfer.denied, or a decision that was not allowed."""
    decision = entry.get("decision")
    return entry.get("event") == DENIED or (isinstance(decision, dict) and decision.get("allowed") is False)


def failed_rules(entry: Mapping[str, Any]) -> list[str]:
    """The rule ids a denial names."""
    decision = entry.get("decision")
    rules = decision.get("failed_rules") if isinstance(decision, dict) else None
    return [str(r) for r in rules] if isinstance(rules, list) else []


def total_bytes(entry: Mapping[str, Any]) -> int:
    """The bytes of the files an entry lists."""
    files = entry.get("files")
    if not isinstance(files, list):
        return 0
    return sum(f["bytes"] for f in files if isinstance(f, dict) and isinstance(f.get("bytes"), int))


def select_entries(
    entries: Iterable[Mapping[str, Any]],
    *,
    recipient: str | None = None,
    since: dt.date | None = None,
    denied: bool = False,
    country_code: str | None = None,
) -> list[dict[str, Any]]:
    """The entries that match every filter given (since: on or after that UTC day)."""
    wanted_country = country_code.strip().upper() if country_code else None
    found = []
    for entry in entries:
        if recipient is not None and entry.get("recipient_id") != recipient:
            continue
        if since is not None and str(entry.get("timestamp", ""))[:10] < since.isoformat():
            continue
        if denied and not is_denied(entry):
            continue
        if wanted_country is not None and (entry_country(entry) or "").upper() != wanted_country:
            continue
        found.append(dict(entry))
    return found


def export_rows(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per entry: scalars as columns, nested values as JSON text."""
    rows = []
    for e in entries:
        where = e.get("destination")
        destination: Mapping[str, Any] = where if isinstance(where, dict) else {}
        row: dict[str, Any] = {"seq": e.get("seq"), "timestamp": _when(e.get("timestamp"))}
        row |= {k: e.get(k) for k in _SCALAR_COLUMNS}
        row |= {
            "destination_country": entry_country(e),
            "destination_uri": destination.get("uri"),
            "operator": e.get("operator"),
            "message": e.get("message"),
            "denied": is_denied(e),
            "failed_rules": ",".join(failed_rules(e)) or None,
            "total_bytes": total_bytes(e),
        }
        row |= {
            k: json.dumps(e[k], sort_keys=True, ensure_ascii=False) if k in e else None for k in _JSON_COLUMNS
        }
        row |= {k: e.get(k) for k in _CHAIN_COLUMNS}
        rows.append(row)
    return rows


def write_parquet(entries: Sequence[Mapping[str, Any]], out: Path) -> int:
    """Write the entries to a Parquet file (one row per entry); return the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.string()
    fields = [pa.field("seq", pa.int64()), pa.field("timestamp", pa.timestamp("ms", tz="UTC"))]
    fields += [pa.field(k, text) for k in (*_SCALAR_COLUMNS, "destination_country", "destination_uri")]
    fields += [pa.field("operator", text), pa.field("message", text), pa.field("denied", pa.bool_())]
    fields += [pa.field("failed_rules", text), pa.field("total_bytes", pa.int64())]
    fields += [pa.field(k, text) for k in (*_JSON_COLUMNS, *_CHAIN_COLUMNS)]
    schema = pa.schema(fields)
    try:
        table = pa.Table.from_pylist(export_rows(entries), schema=schema)
        pq.write_table(table, out)
    except (pa.ArrowException, OSError) as exc:
        raise TransferLogError(str(out), f"cannot write the Parquet export ({type(exc).__name__})") from exc
    return int(table.num_rows)


def render_report(entries: Sequence[Mapping[str, Any]], verification: LogVerification, source: str) -> str:
    """The self-contained HTML report of a log."""
    days = sorted({str(e.get("timestamp", ""))[:10] for e in entries if e.get("timestamp")})
    by_month = len(days) > 1 and (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days > 62
    periods: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries:
        if e.get("event") == DELIVERED and e.get("timestamp"):
            periods[str(e["timestamp"])[: 7 if by_month else 10]][entry_country(e) or "unknown"] += 1
    reasons = Counter(r for e in entries if is_denied(e) for r in failed_rules(e) or ["(no rule named)"])
    volume: Counter[str] = Counter()
    for e in entries:
        if e.get("event") == DELIVERED:
            volume[str(e.get("recipient_id") or "unknown")] += total_bytes(e)
    events = Counter(str(e.get("event")) for e in entries)
    summary = ", ".join(f"{n} {name}" for name, n in sorted(events.items())) or "no entries"
    return html_page(
        "Transfer log report",
        [
            f"<p>Log: <code>{_e(source)}</code>. Entries: {len(entries)} ({_e(summary)}).</p>",
            verification_banner(verification),
            '<section id="over-time"><h2>Transfers over time by destination country</h2>',
            _columns_svg(periods, "deliveries per " + ("month" if by_month else "day")),
            '</section><section id="denials"><h2>Denials by reason (failed rule)</h2>',
            bars_svg(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])), "denials", str),
            '</section><section id="bytes"><h2>Bytes delivered by recipient</h2>',
            bars_svg(sorted(volume.items(), key=lambda kv: (-kv[1], kv[0])), "bytes", human_size),
            '</section><section id="entries"><h2>Entries</h2>',
            _table(entries),
            "</section>",
        ],
    )


# the page skeleton every genegate HTML report shares (audit report, audit impact)

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:.2em .5em}"
    ".ok{color:#1d6b34;font-weight:bold}.bad{color:#a0211c;font-weight:bold}"
    "svg{display:block;margin:.5em 0 1.5em}svg text{font-size:12px;fill:#222}"
)


def html_page(title: str, body: Sequence[str]) -> str:
    """A self-contained page: title, the house style inline, then body (already escaped HTML)."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>genegate {_e(title.lower())}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"


def verification_banner(verification: LogVerification) -> str:
    """The log's verification result, green or red, as the first thing a reviewer reads."""
    status = (
        f"Chain and signatures verified: {verification.entries} entries."
        if verification.ok
        else f"VERIFICATION FAILED at entry {verification.first_bad}: {verification.reason}"
    )
    return f'<p class="{"ok" if verification.ok else "bad"}" id="verification">{_e(status)}</p>'


def html_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table of escaped cells (None shows empty)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e('' if v is None else v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def escape_html(value: object) -> str:
    """Text (or any value's str) escaped for HTML content and attributes."""
    return html.escape(str(value), quote=True)


_e = escape_html


def human_size(n: int) -> str:
    """Bytes as B, KiB, MiB, GiB or TiB."""
    value, units = float(n), ("B", "KiB", "MiB", "GiB", "TiB")
    step = 0
    while value >= 1024 and step < len(units) - 1:
        value, step = value / 1024, step + 1
    return f"{n} B" if step == 0 else f"{value:.1f} {units[step]}"


def _empty_svg(what: str) -> str:
    return (
        f'<svg class="plot empty" role="img" width="420" height="40" viewBox="0 0 420 40">'
        f'<text x="8" y="24">No {_e(what)} recorded.</text></svg>'
    )


def bars_svg(items: list[tuple[str, int]], unit: str, fmt: Callable[[int], str]) -> str:
    """Horizontal bars, one per item, labelled with the value (fmt formats it)."""
    if not items:
        return _empty_svg(unit)
    label_w, bar_w, row_h = 260, 360, 24
    top = max(v for _, v in items) or 1
    height = row_h * len(items) + 10
    rows = []
    for i, (label, value) in enumerate(items):
        y = 5 + i * row_h
        w = max(1, round(bar_w * value / top))
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{_e(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{_e(label)}: {_e(fmt(value))}</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 16}">{_e(fmt(value))}</text>'
        )
    width = label_w + bar_w + 110
    return (
        f'<svg class="plot" role="img" aria-label="{_e(unit)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(rows)}</svg>'
    )


def _columns_svg(periods: Mapping[str, Counter[str]], unit: str) -> str:
    """Stacked columns per period, one colour per destination country, with a legend."""
    if not periods:
        return _empty_svg("deliveries")
    keys = sorted(periods)
    countries = sorted({c for counts in periods.values() for c in counts})
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(countries)}
    col_w, plot_h, left, top_pad = 36, 200, 40, 10
    top = max(sum(c.values()) for c in periods.values())
    width = left + col_w * len(keys) + 140
    height = plot_h + 90
    shapes = [
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + col_w * len(keys)}" '
        f'y2="{top_pad + plot_h}" stroke="#888"/>',
        f'<text x="4" y="{top_pad + 12}">{top}</text><text x="4" y="{top_pad + plot_h}">0</text>',
    ]
    for i, key in enumerate(keys):
        x, base = left + i * col_w + 4, float(top_pad + plot_h)
        for c in countries:
            n = periods[key][c]
            if n:
                h = plot_h * n / top
                base -= h
                shapes.append(
                    f'<rect class="bar" x="{x}" y="{base:.1f}" width="{col_w - 8}" height="{h:.1f}" '
                    f'fill="{colour[c]}"><title>{_e(key)} {_e(c)}: {n}</title></rect>'
                )
        shapes.append(
            f'<text x="{x + 4}" y="{top_pad + plot_h + 12}" '
            f'transform="rotate(45 {x + 4} {top_pad + plot_h + 12})">{_e(key)}</text>'
        )
    for j, c in enumerate(countries):
        y = top_pad + 14 + j * 18
        lx = left + col_w * len(keys) + 16
        shapes.append(
            f'<rect x="{lx}" y="{y - 10}" width="12" height="12" fill="{colour[c]}"/>'
            f'<text x="{lx + 18}" y="{y}">{_e(c)}</text>'
        )
    return (
        f'<svg class="plot" role="img" aria-label="{_e(unit)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(shapes)}</svg>'
    )


def _table(entries: Sequence[Mapping[str, Any]]) -> str:
    head = ("seq", "time (UTC)", "event", "release", "recipient", "country", "detail")
    rows = []
    for e in entries:
        detail = (
            ", ".join(failed_rules(e))
            if is_denied(e)
            else (human_size(total_bytes(e)) if e.get("files") else "")
        )
        rows.append(
            (e.get("seq"), e.get("timestamp"), e.get("event"), e.get("release_id"), e.get("recipient_id"),
             entry_country(e) or "", detail)
        )  # fmt: skip
    return html_table(head, rows)


def _when(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
