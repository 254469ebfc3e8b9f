"""`genegate demo`: the whole story of SPEC.md 9, end to end, on synthetic data. No network, no server.

(1) a synthetic identified cohort with consent edge cases; (2) a lab keystore and three partners
with their own Crypt4GH keys — Zurich (CH, adequacy, under a no-re-identification contract), Tokyo
(JP, standard contractual clauses and the bases the cohort's Swiss and Chinese residents need),
Shanghai (CN, to be denied) — and a Crypt4GH encrypt / re-key / decrypt round trip; (3) and (4)
two releases of the same cohort, each made, assessed and shared by the `release_and_share` Prefect
flow (Prefect's temporary local API, state under the demo directory): a summary-only release that
passes every test (class deidentified) and an individual-level release made for Tokyo (class
pseudonymised: only subjects who named Tokyo in their consent, sent only where a basis exists);
(5) the scheduled partner-sync flow with nothing new, the log verified and the HTML report; (6)
the individual release stored encrypted at rest for its own key, then crypto-shredded; (7) one
deletion request and one breach-impact query (flows/demo_lifecycle.py), and a closing summary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deid.synth import CohortSpec, CohortSummary, Progress, synthesize_cohort
from flows.console import PASSPHRASE_ENV
from flows.demo_lifecycle import at_rest_stage, closing_summary, lifecycle_stage
from keys import Basis, BasisType, Keystore, Passphrase, SecretKey, encode_secret_key, new_recipient
from transfer import (
    TRANSFER_LOG,
    TransferLog,
    decrypt_file,
    encrypt_file,
    header_recipients_count,
    reencrypt_file,
    render_report,
)

MARKER = ".genegate-demo"
DEMO_PASSPHRASE = "genegate demo passphrase (synthetic data only)"  # noqa: S105 - demo keystore only
ZURICH, TOKYO, SHANGHAI = "ch-zurich-genomics", "jp-tokyo-medgen", "cn-shanghai-seq"
PARTNERS = (
    (ZURICH, "Zurich Genomics AG", "CH", "eu-central-2"),
    (TOKYO, "Tokyo MedGen KK", "JP", "ap-northeast-1"),
    (SHANGHAI, "Shanghai Sequencing Co., Ltd.", "CN", "cn-north-1"),
)
PARTNER_IDS = tuple(p[0] for p in PARTNERS)
STAGES = 7
_EPHEMERAL_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


@dataclass(slots=True)
class DemoReport:
    """What the demo did, stage by stage (counts, fingerprints and paths; no identifier values)."""

    out: Path
    cohort: CohortSummary | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def prepare(out: Path) -> None:
    """Create the demo directory, replacing one an earlier demo made; refuse any other directory."""
    if out.exists():
        if not (out / MARKER).exists():
            raise FileExistsError(f"{out} exists and is not a genegate demo directory; pass --out NEW_DIR")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text(
        "made by `genegate demo`; removed and rebuilt on the next run\n", encoding="utf-8"
    )


def run_demo(out: Path, samples: int, progress: Progress, announce: Callable[[str], None]) -> DemoReport:
    """Run every stage into out (which prepare() made)."""
    report = DemoReport(out=out)
    announce(f"1/{STAGES} synth: a synthetic identified cohort of {samples} samples")
    report.cohort = synthesize_cohort(CohortSpec(out=out / "cohort", samples=samples, seed=7), progress)
    report.stages["synth"] = report.cohort.as_dict()
    announce(f"2/{STAGES} keys: lab keystore, three partners, Crypt4GH encrypt / re-key / decrypt")
    keys = report.stages["keys"] = _keys_stage(out)
    report.lines.append(
        f"keys: lab key {keys['lab_fingerprint']}; recipients {', '.join(PARTNER_IDS)}; the VCF encrypted "
        f"for lab + CH partner ({keys['header_packets']} header packets), re-keyed for the JP partner by "
        f"header only; partner decryption matches the plaintext: {keys['partner_round_trip']}"
    )
    with _flow_environment(out):
        announce(f"3/{STAGES} release_and_share (Prefect flow): a summary-only release to every partner")
        summary = report.stages["summary"] = _share(out, summary_only=True, for_recipient=None)
        report.lines += _share_lines("summary-only", summary)
        announce(f"4/{STAGES} release_and_share (Prefect flow): an individual-level release made for {TOKYO}")
        individual = report.stages["individual"] = _share(out, summary_only=False, for_recipient=TOKYO)
        report.lines += _share_lines("individual-level", individual)
        announce(
            f"5/{STAGES} partner-sync (the scheduled flow) with nothing new; the log verified; HTML report"
        )
        report.stages["audit"] = _audit_stage(out, report.lines)
    announce(f"6/{STAGES} at rest: the individual release stored for its own key, then crypto-shredded")
    report.stages["at_rest"] = at_rest_stage(out, Path(individual["release"]), _passphrase(), report.lines)
    announce(f"7/{STAGES} lifecycle: one deletion request, one breach-impact query, the retention preview")
    report.stages["lifecycle"] = lifecycle_stage(out, TOKYO, _passphrase(), report.lines)
    report.lines += closing_summary(report.stages)
    return report


@contextmanager
def _flow_environment(out: Path) -> Iterator[None]:
    """The flows read the passphrase from the environment; without a Prefect server configured,
    Prefect's temporary local API keeps its state under the demo directory, not ~/.prefect."""
    saved = {k: os.environ.get(k) for k in (PASSPHRASE_ENV, "PREFECT_HOME", _EPHEMERAL_TIMEOUT)}
    os.environ.setdefault(PASSPHRASE_ENV, DEMO_PASSPHRASE)
    if "PREFECT_API_URL" not in os.environ:
        os.environ["PREFECT_HOME"] = str((out / "prefect").resolve())
        # Prefect's default 20 s for its temporary server is short on a busy 2-core machine
        os.environ.setdefault(_EPHEMERAL_TIMEOUT, "90")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _share(out: Path, *, summary_only: bool, for_recipient: str | None) -> dict[str, Any]:
    """One `release_and_share` flow run: deid (cgipa) -> assess -> transfer to every partner."""
    from flows.console import run_flow
    from flows.pipeline import release_and_share

    result: dict[str, Any] = run_flow(
        release_and_share,
        0,
        manifest=str((out / "cohort" / "manifest.csv").resolve()),
        policy="cgipa",
        recipients=list(PARTNER_IDS),
        out=str((out / "releases").resolve()),
        results=str((out / "results").resolve()),
        home=str((out / "keystore").resolve()),
        summary_only=summary_only,
        seed=7,
        for_recipient=for_recipient,
    )
    return result


def _share_lines(kind: str, run: dict[str, Any]) -> list[str]:
    excluded = {k: v for k, v in run["excluded"].items() if v}
    if not run["blocking_failed"]:
        verdict = f"assessment {run['status']}, certified {run['class']}"
    else:  # individual-level data fails the statistical tests by nature; no leak test may fail
        verdict = (
            f"assessment {run['status']} the statistical tests ({', '.join(run['blocking_failed'])}), "
            f"as individual-level data does: class {run['class']}, sent only under consent and a basis"
        )
    lines = [
        f"{kind} release {run['release_id']}: {run['included']} of {run['rows']} samples (excluded: "
        f"{excluded or 'none'}); {verdict}"
    ]
    for send in run["sends"]:
        if send["outcome"] == "denied":
            verdict = "denied: " + "; ".join(send["reasons"])
        else:
            verdict = (
                f"{send['outcome']}, {len(send['files'])} files Crypt4GH-encrypted for the partner, "
                f"{send.get('bytes_sent', 0)} bytes to {send.get('destination')}"
            )
        lines.append(f"  -> {send['recipient_id']}: {verdict}")
    return lines


def _audit_stage(out: Path, lines: list[str]) -> dict[str, Any]:
    from flows.console import run_flow
    from flows.pipeline import partner_sync

    store = Keystore(out / "keystore")
    synced: list[dict[str, Any]] = run_flow(
        partner_sync, 0, recipient=TOKYO, releases=str((out / "releases").resolve()), home=str(store.home)
    )
    log = TransferLog(store.home / TRANSFER_LOG)
    verification = log.verify(store.verify_key())
    html = out / "audit-report.html"
    html.write_text(render_report(log.entries(), verification, str(log.path)), encoding="utf-8")
    lines.append(
        f"partner-sync/{TOKYO}: {len(synced)} release(s) sent (everything certified was already delivered)"
    )
    lines.append(
        f"audit verify: {'ok' if verification.ok else 'FAILED: ' + str(verification.reason)} "
        f"({verification.entries} signed, hash-chained entries); report {html.relative_to(out)}"
    )
    return {"synced": len(synced), "log_ok": verification.ok, "log_entries": verification.entries,
            "report": str(html)}  # fmt: skip


def _passphrase() -> Passphrase:
    return Passphrase(os.environ.get(PASSPHRASE_ENV, DEMO_PASSPHRASE))


def _keys_stage(out: Path) -> dict[str, object]:
    passphrase = _passphrase()
    store = Keystore.init(out / "keystore", passphrase)
    today = dt.datetime.now(dt.UTC).date()
    partner_dir = out / "partners"
    partner_dir.mkdir(mode=0o700)
    partner_keys: dict[str, SecretKey] = {}
    with store.editing_registry(passphrase) as registry:
        for rid, name, country, region in PARTNERS:
            key = SecretKey.generate()  # in real life the partner makes this and sends only the public key
            partner_keys[rid] = key
            (partner_dir / f"{rid}.sec").write_bytes(encode_secret_key(key, passphrase.reveal()))
            (partner_dir / f"{rid}.pub").write_text(key.public_key().to_pem(), encoding="ascii")
            registry.add(
                new_recipient(
                    rid,
                    name=name,
                    country=country,
                    public_key_text=key.public_key().to_pem(),
                    key_source=str(partner_dir / f"{rid}.pub"),
                    destination=f"file://{(out / 'outbox' / rid).resolve()}",
                    region=region,
                    valid_until=today + dt.timedelta(days=365),
                    purposes=("DUO:0000006",),
                    contract_ref=f"NRC-{today.year}-{rid}",
                    contract_signed=today - dt.timedelta(days=30),
                    today=today,
                    added_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                )
            )
        registry.add_basis(
            "jp-tokyo-medgen",
            Basis(
                BasisType.SCC_EU_2021,
                ref=f"SCC-{today.year}-TOKYO",
                signed=today - dt.timedelta(days=60),
                expires=today + dt.timedelta(days=3 * 365),
                module=1,
                tia_ref=f"TIA-{today.year}-TOKYO",
                tia_date=today - dt.timedelta(days=70),
            ),
            today,
        )
        # Tokyo also holds what the cohort's Swiss and Chinese residents' data need there: the
        # FDPIC-recognised clauses, a PIPL standard contract and the HGR filing
        signed = today - dt.timedelta(days=90)
        for basis in (
            Basis(BasisType.CH_SCC, ref=f"CH-SCC-{today.year}-TOKYO", signed=signed,
                  tia_ref=f"TIA-{today.year}-TOKYO-CH", tia_date=today - dt.timedelta(days=70)),
            Basis(BasisType.PIPL_CONTRACT, ref=f"PIPL-{today.year}-TOKYO", signed=signed,
                  consent_ref=f"PIPL-CONSENT-{today.year}-TOKYO"),
            Basis(BasisType.HGR_FILING, ref=f"HGR-{today.year}-TOKYO", signed=signed,
                  filing=f"HGR-{today.year}-0043"),
        ):  # fmt: skip
            registry.add_basis(TOKYO, basis, today)
        # the Swiss partner also holds what Japanese- and Chinese-origin data need (APPI, PIPL, HGR)
        for basis in (
            Basis(BasisType.APPI_CONSENT, ref=f"APPI-{today.year}-ZURICH", signed=signed,
                  consent_ref=f"APPI-CONSENT-{today.year}-ZURICH"),
            Basis(BasisType.PIPL_CONTRACT, ref=f"PIPL-{today.year}-ZURICH", signed=signed,
                  consent_ref=f"PIPL-CONSENT-{today.year}-ZURICH"),
            Basis(BasisType.HGR_FILING, ref=f"HGR-{today.year}-ZURICH", signed=signed,
                  filing=f"HGR-{today.year}-0042"),
        ):  # fmt: skip
            registry.add_basis(ZURICH, basis, today)
    vcf = out / "cohort" / "genotypes" / "cohort.vcf.gz"
    enc = out / "encrypted"
    enc.mkdir()
    recipients = store.recipients_for(["ch-zurich-genomics"], today)
    both = [store.lab_public_key(), recipients[0].public_key]
    digest = encrypt_file(vcf, enc / "cohort.vcf.gz.lab+zurich.c4gh", both)
    tokyo = store.recipients_for(["jp-tokyo-medgen"], today)[0].public_key
    lab_keys = store.lab_secret_keys(passphrase)
    reencrypt_file(enc / "cohort.vcf.gz.lab+zurich.c4gh", enc / "cohort.vcf.gz.tokyo.c4gh", lab_keys, [tokyo])
    checks = {}
    for rid, file in (("ch-zurich-genomics", "lab+zurich"), ("jp-tokyo-medgen", "tokyo")):
        plain = enc / f"check-{rid}.vcf.gz"
        decrypt_file(enc / f"cohort.vcf.gz.{file}.c4gh", plain, [partner_keys[rid]])
        checks[rid] = hashlib.sha256(plain.read_bytes()).hexdigest() == digest.plaintext_sha256
        plain.unlink()
    return {
        "keystore": str(store.home),
        "lab_fingerprint": store.config().current.fingerprint,
        "recipients": [r.id for r in store.registry().all()],
        "encrypted_bytes": digest.ciphertext_bytes,
        "header_packets": header_recipients_count(enc / "cohort.vcf.gz.lab+zurich.c4gh"),
        "partner_round_trip": checks,
    }
