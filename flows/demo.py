"""`genegate demo`: every stage that exists, end to end, on synthetic data. No network, no server.

Stages so far: (1) a synthetic identified cohort; (2) a lab keystore, three partner recipients
with their own Crypt4GH keys (CH by adequacy, JP under SCCs, CN to be denied), the joint VCF
encrypted for the lab and the Swiss partner, re-keyed for the Japanese partner by rewriting only
its header, and each partner's copy decrypted with that partner's key to prove the round trip;
(3) the manifest de-identified under the cgipa profile with codes from the keystore's vault.
Each later stage (deid, assess, transfer, audit) adds itself here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deid import assess, deidentify, load_policy
from deid.synth import CohortSpec, CohortSummary, Progress, synthesize_cohort
from flows.receipts import log_destruction_receipt
from keys import Basis, BasisType, Keystore, Passphrase, SecretKey, Vault, encode_secret_key, new_recipient
from transfer import (
    TRANSFER_LOG,
    TransferLog,
    check_transfer,
    decrypt_file,
    encrypt_file,
    header_recipients_count,
    reencrypt_file,
    render_report,
    send_release,
)

MARKER = ".genegate-demo"
DEMO_PASSPHRASE = "genegate demo passphrase (synthetic data only)"  # noqa: S105 - demo keystore only
PARTNERS = (
    ("ch-zurich-genomics", "Zurich Genomics AG", "CH", "eu-central-2"),
    ("jp-tokyo-medgen", "Tokyo MedGen KK", "JP", "ap-northeast-1"),
    ("cn-shanghai-seq", "Shanghai Sequencing Co., Ltd.", "CN", "cn-north-1"),
)
PARTNER_IDS = tuple(p[0] for p in PARTNERS)


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
    """Run every built stage into out (which prepare() made)."""
    report = DemoReport(out=out)
    announce(f"1/6 synth: a synthetic identified cohort of {samples} samples")
    report.cohort = synthesize_cohort(CohortSpec(out=out / "cohort", samples=samples, seed=7), progress)
    report.stages["synth"] = report.cohort.as_dict()
    announce("2/6 keys: lab keystore, three partners, Crypt4GH encrypt / re-key / decrypt")
    keys = report.stages["keys"] = _keys_stage(out)
    report.lines.append(
        f"keys: lab key {keys['lab_fingerprint']}; recipients {', '.join(PARTNER_IDS)}; the VCF encrypted "
        f"for lab + CH partner ({keys['header_packets']} header packets), re-keyed for the JP partner by "
        f"header only; partner decryption matches the plaintext: {keys['partner_round_trip']}"
    )
    announce(
        "3/3 deid: the cohort de-identified under cgipa (manifest, VCF, BAM, FASTQ), and a summary release"
    )
    deid = report.stages["deid"] = _deid_stage(out, summary_only=False)
    files = deid["genomic"]
    report.lines.append(
        f"deid: release {deid['release_id']}: {deid['included']} of {deid['rows']} samples released "
        f"(excluded by reason: {deid['excluded']}); columns {deid['columns']}; "
        f"VCF {files['vcf']['sites_out']} of {files['vcf']['sites_in']} sites, "
        f"{files['alignment']['outputs']} alignments ({files['alignment']['reads_out']} of "
        f"{files['alignment']['reads_in']} reads; chrY/chrM dropped), {files['fastq']['outputs']} FASTQ files"
    )
    summary = report.stages["deid_summary"] = _deid_stage(out, summary_only=True)
    report.lines.append(
        f"deid --summary-only: release {summary['release_id']}: allele frequencies at "
        f"{summary['genomic']['summary']['sites_out']} sites, no individual-level file"
    )
    announce("4/6 assess: re-identification tests T01-T14 on both releases, results to Parquet")
    for key in ("deid", "deid_summary"):
        outcome = report.stages[f"assess_{key}"] = _assess_stage(out, report.stages[key])
        report.lines.append(
            f"assess {report.stages[key]['release_id']}: {outcome['status']}, class {outcome['class']}"
            + (
                f" (blocking failures: {', '.join(outcome['blocking_failed'])})"
                if outcome["blocking_failed"]
                else ""
            )
            + f"; {outcome['metrics']} metrics in {outcome['results']}"
        )
    announce("5/6 gate: each release against each partner (dry run: nothing is sent)")
    gate = report.stages["gate"] = _gate_stage(out, [report.stages["deid_summary"], report.stages["deid"]])
    for line in gate["lines"]:
        report.lines.append(line)
    announce("6/6 transfer + audit: deliver what the gate allows, log every decision, verify the log")
    sent = report.stages["transfer"] = _transfer_stage(
        out, [report.stages["deid_summary"], report.stages["deid"]]
    )
    report.lines += sent["lines"]
    report.lines.append(
        "the same chain as one Prefect flow: `genegate run release-and-share --manifest … --to …`; "
        "scheduled partner transfers: prefect.yaml / `genegate schedule add` (the demo runs no server)"
    )
    return report


def _transfer_stage(out: Path, releases: list[dict[str, Any]]) -> dict[str, Any]:
    store = Keystore(out / "keystore")
    passphrase = _passphrase()
    wrapper = store.vault_wrapper(passphrase)
    today = dt.datetime.now(dt.UTC).date()
    log = TransferLog(store.home / TRANSFER_LOG)
    outcomes: dict[str, str] = {}
    lines = []
    for release in releases:
        for rid in PARTNER_IDS:
            result = send_release(
                store, Path(release["path"]), rid, passphrase, today, wrapper=wrapper, log=log
            )
            outcomes[f"{release['release_id']}->{rid}"] = result.outcome
            if result.outcome != "denied":
                lines.append(
                    f"transfer {release['release_id']} -> {rid}: {result.outcome}, {len(result.files)} files "
                    f"Crypt4GH-encrypted, {result.bytes_sent} bytes to {result.destination}"
                )
    first = next(k for k, v in outcomes.items() if v != "denied")
    release_id, rid = first.split("->")
    again = send_release(
        store, out / "releases" / release_id, rid, passphrase, today, wrapper=wrapper, log=log
    )  # a re-run delivers nothing and logs that
    verification = log.verify(store.verify_key())
    html = out / "audit-report.html"
    html.write_text(render_report(log.entries(), verification, str(log.path)), encoding="utf-8")
    denied = sum(1 for v in outcomes.values() if v == "denied")
    lines.append(
        f"transfer re-run {release_id} -> {rid}: {again.outcome}; "
        f"{denied} denied transfers logged with their rules"
    )
    lines.append(
        f"audit verify: {'ok' if verification.ok else 'FAILED: ' + str(verification.reason)} "
        f"({verification.entries} signed, hash-chained entries); report {html.relative_to(out)}"
    )
    return {
        "outcomes": outcomes,
        "rerun": again.outcome,
        "log_ok": verification.ok,
        "log_entries": verification.entries,
        "lines": lines,
    }


def _passphrase() -> Passphrase:
    return Passphrase(os.environ.get("GENEGATE_PASSPHRASE", DEMO_PASSPHRASE))


def _deid_stage(out: Path, summary_only: bool) -> dict[str, Any]:
    store = Keystore(out / "keystore")
    policy = load_policy("cgipa")
    vault = Vault(store.home, policy.vault_domain, store.vault_wrapper(_passphrase()))
    result = deidentify(
        out / "cohort" / "manifest.csv",
        policy,
        out / "releases",
        vault,
        summary_only=summary_only,
        ledger=store.home / "ledger",
    )
    counts = result.record["counts"]
    return {
        "genomic": result.record["genomic_files"]["released"],
        "release_id": result.release_id,
        "path": str(result.path),
        "rows": counts["manifest_rows"],
        "included": counts["included_samples"],
        "excluded": result.record["excluded"],
        "columns": ", ".join(counts["columns_released"]),
    }


def _assess_stage(out: Path, deid: dict[str, Any]) -> dict[str, Any]:
    result = assess(Path(deid["path"]), out / "cohort" / "manifest.csv", out / "results", seed=7)
    log_destruction_receipt(Keystore(out / "keystore"), Path(deid["path"]), result.as_dict(), _passphrase())
    return {
        "status": result.status,
        "class": result.release_class,
        "blocking_failed": list(result.blocking_failed),
        "metrics": len(result.metrics),
        "results": str(result.results_file.relative_to(out)),
    }


def _gate_stage(out: Path, releases: list[dict[str, Any]]) -> dict[str, Any]:
    store = Keystore(out / "keystore")
    wrapper = store.vault_wrapper(_passphrase())
    today = dt.datetime.now(dt.UTC).date()
    decisions: dict[str, dict[str, Any]] = {}
    lines = []
    for release in releases:
        for rid in PARTNER_IDS:
            decision = check_transfer(store, Path(release["path"]), rid, today, wrapper)
            failed = list(decision.failed)
            decisions[f"{release['release_id']}->{rid}"] = {"allowed": decision.allowed, "failed": failed}
            verdict = "ALLOWED" if decision.allowed else f"denied ({', '.join(failed)})"
            lines.append(f"gate {release['release_id']} -> {rid}: {verdict}")
    return {"decisions": decisions, "lines": lines, "tables_digest": decision.tables_digest}


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
        # the Swiss partner also holds what Japanese- and Chinese-origin data need (APPI, PIPL, HGR)
        signed = today - dt.timedelta(days=90)
        for basis in (
            Basis(BasisType.APPI_CONSENT, ref=f"APPI-{today.year}-ZURICH", signed=signed,
                  consent_ref=f"APPI-CONSENT-{today.year}-ZURICH"),
            Basis(BasisType.PIPL_CONTRACT, ref=f"PIPL-{today.year}-ZURICH", signed=signed,
                  consent_ref=f"PIPL-CONSENT-{today.year}-ZURICH"),
            Basis(BasisType.HGR_FILING, ref=f"HGR-{today.year}-ZURICH", signed=signed,
                  filing=f"HGR-{today.year}-0042"),
        ):  # fmt: skip
            registry.add_basis("ch-zurich-genomics", basis, today)
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
