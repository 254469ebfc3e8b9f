"""End-to-end transfer of a large release to an S3 server (moto, loopback) against a shell pipeline.

genegate: `send_release` in a `python -c` child (like the CLI: interpreter, imports, keystore
unlock) — gate, then each release file Crypt4GH-encrypted straight into a multipart upload to its
final key (one pass: encrypt -> SHA-256 per part -> upload, parts four at a time; no ciphertext on
disk), HeadObject verification of size and checksum, a receipt per file, the signed manifest
written last, the log entry. Baseline: the reference `crypt4gh encrypt` of the big file to disk,
then a `python -c` boto3 `upload_file` of the result with the same part size (boto3's managed
transfer, its default 10 threads, its default CRC32 checksums) — the "crypt4gh + aws s3 cp" a lab
would script.

The release is built as `genegate deid` builds one: a real assessed summary release (synthetic
cohort, `deidentify(summary_only=True)`, `assess`), to which one random file of the benchmark's
size is added, listed in release.json with its SHA-256 and the release digest recomputed with
`deid.release.release_digest`, the lab's ledger updated to match; the gate allows it.

Size: GENEGATE_BENCH_TRANSFER_GB (decimal GB, default 5, the issue's size). moto keeps every
object in its own memory, so its peak RSS is reported in a context row. The server
(`moto_server`) runs as a child on a free loopback port; before each timed run the bucket is
emptied (untimed), so every genegate run delivers the whole release. The two cases alternate run
by run (genegate, baseline, genegate, ...) so that load from other work on the machine falls on
both alike; each row is the median of its runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.harness import Measurement, measure, workdir

GB = float(os.environ.get("GENEGATE_BENCH_TRANSFER_GB", "5"))
SIZE = int(GB * 10**9)
RUNS = 3 if SIZE <= 10**9 else 1  # one run of 5 GB each way already takes minutes
PART = 64 * 1024 * 1024  # genegate's default part size, used by both sides
REGION = "eu-central-2"
BUCKET = "bench-inbox"
PASSPHRASE = "benchmark passphrase"  # noqa: S105 - the throwaway keystore of this run
BASELINE = "crypt4gh encrypt (reference CLI) + boto3 upload_file"
CRYPT4GH = Path(sys.executable).parent / "crypt4gh"
MOTO = Path(sys.executable).parent / "moto_server"


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """One table: genegate's transfer against the shell pipeline, with moto's peak RSS as context."""
    work = workdir() / "transfer"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = dict(os.environ)
    try:
        _wait_for(endpoint)
        os.environ.update(_env(endpoint))
        subprocess.run(_python(_SETUP, work=work, size=SIZE, pw=PASSPHRASE, bucket=BUCKET), check=True)
        empty = _python(_EMPTY, bucket=BUCKET)
        cases = [("genegate send_release to s3 (process)", _python(_SEND, work=work, pw=PASSPHRASE))]
        cases.append((BASELINE, _pipeline(work)))
        runs = [[measure(name, argv, runs=1, prepare=empty) for name, argv in cases] for _ in range(RUNS)]
        rows = [_median([each[i] for each in runs]) for i in range(len(cases))]
        rows.append(
            Measurement("moto server (context: its peak RSS over all runs)", 0.0, _peak_mib(server), 1)
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    size = f"{GB:g} GB"
    return [(f"transfer of a {size} release to S3 (moto, loopback), x {BASELINE}", rows, BASELINE)]


def _median(runs: list[Measurement]) -> Measurement:
    """One row from single runs of a case: the median wall time, the peak of any run."""
    seconds = statistics.median(r.seconds for r in runs)
    return Measurement(runs[0].name, seconds, max(r.peak_mib for r in runs), len(runs))


def _pipeline(work: Path) -> list[str]:
    encrypt = (
        f"C4GH_PASSPHRASE='{PASSPHRASE}' {CRYPT4GH} encrypt --recipient_pk {work / 'recipient.pub'}"
        f" < {work / 'release' / 'big.bin'} > {work / 'big.bin.c4gh'}"
    )
    upload = _python(_UPLOAD, src=work / "big.bin.c4gh", bucket=BUCKET, part=PART)
    return ["sh", "-c", f"env {encrypt} && {shlex.join(upload)} && rm {work / 'big.bin.c4gh'}"]


def _env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # the loopback server's dummy credentials
        "AWS_DEFAULT_REGION": REGION,
        "GENEGATE_S3_ENDPOINT_URL": endpoint,
        "GENEGATE_S3_ADDRESSING_STYLE": "path",
        "GENEGATE_S3_PART_SIZE": str(PART),
        "BENCH_S3_ENDPOINT": endpoint,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(endpoint: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start on loopback")


def _peak_mib(server: subprocess.Popen[bytes]) -> float:
    status = Path(f"/proc/{server.pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _python(template: str, **values: object) -> list[str]:
    """`python -c` with the template's fields filled in (paths as plain strings)."""
    return [sys.executable, "-c", template.format(**{k: str(v) for k, v in values.items()})]


_SETUP = """
import datetime as dt, hashlib, json, os, boto3
from pathlib import Path
from deid import assess, deidentify, load_policy
from deid.release import release_digest
from deid.synth import CohortSpec, synthesize_cohort
from keys import Basis, BasisType, Keystore, Passphrase, SecretKey, Vault, new_recipient
from transfer.facts import ledger_path
work, size, pw = Path({work!r}), int({size!r}), Passphrase({pw!r})
today = dt.datetime.now(dt.UTC).date()
synthesize_cohort(CohortSpec(out=work / 'cohort', samples=12, seed=3, reads=False))
store = Keystore.init(work / 'ks', pw)
policy = load_policy('cgipa')
vault = Vault(store.home, policy.vault_domain, store.vault_wrapper(pw))
made = deidentify(work / 'cohort' / 'manifest.csv', policy, work / 'releases', vault,
                  summary_only=True, ledger=store.home / 'ledger')
assess(made.path, work / 'cohort' / 'manifest.csv', work / 'results', seed=7)
release = made.path.rename(work / 'release')
digest = hashlib.sha256()
with open(release / 'big.bin', 'wb') as out:
    left = size
    while left:
        chunk = os.urandom(min(left, 1 << 24))
        digest.update(chunk)
        out.write(chunk)
        left -= len(chunk)
doc = json.loads((release / 'release.json').read_text())
doc['files'].append({{'name': 'big.bin', 'sha256': digest.hexdigest(), 'bytes': size}})
doc['release_sha256'] = release_digest(doc['files'])
(release / 'release.json').write_text(json.dumps(doc, indent=2))
ledger = ledger_path(store.home, doc['release_id'])
entry = json.loads(ledger.read_text())
entry['release_sha256'] = doc['release_sha256']
ledger.write_text(json.dumps(entry, indent=2))
key = SecretKey.generate()
(work / 'recipient.pub').write_text(key.public_key().to_pem())
with store.editing_registry(pw) as registry:
    registry.add(new_recipient('ch-zurich', name='Zurich', country='CH',
        public_key_text=key.public_key().to_pem(), key_source='recipient.pub',
        destination='s3://{bucket}/incoming', region='eu-central-2',
        valid_until=today + dt.timedelta(days=365), purposes=('DUO:0000006',), contract_ref='NRC-1',
        contract_signed=today - dt.timedelta(days=30), today=today, added_at='2026-01-01T00:00:00+00:00'))
    signed = today - dt.timedelta(days=90)
    for basis in (Basis(BasisType.APPI_CONSENT, ref='APPI-1', signed=signed, consent_ref='APPI-C-1'),
                  Basis(BasisType.PIPL_CONTRACT, ref='PIPL-1', signed=signed, consent_ref='PIPL-C-1'),
                  Basis(BasisType.HGR_FILING, ref='HGR-1', signed=signed, filing='HGR-0042')):
        registry.add_basis('ch-zurich', basis, today)
boto3.client('s3', endpoint_url=os.environ['BENCH_S3_ENDPOINT']).create_bucket(
    Bucket='{bucket}', CreateBucketConfiguration={{'LocationConstraint': 'eu-central-2'}})
"""
_EMPTY = """
import os, boto3
s3 = boto3.client('s3', endpoint_url=os.environ['BENCH_S3_ENDPOINT'])
for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}'):
    for item in page.get('Contents', []):
        s3.delete_object(Bucket='{bucket}', Key=item['Key'])
for upload in s3.list_multipart_uploads(Bucket='{bucket}').get('Uploads', []):
    s3.abort_multipart_upload(Bucket='{bucket}', Key=upload['Key'], UploadId=upload['UploadId'])
"""
_SEND = """
import datetime as dt
from pathlib import Path
from keys import Keystore, Passphrase
from transfer import SendOutcome, TransferLog, send_release
from transfer.facts import TRANSFER_LOG
work, pw = Path({work!r}), Passphrase({pw!r})
store = Keystore(work / 'ks')
result = send_release(store, work / 'release', 'ch-zurich', pw, dt.datetime.now(dt.UTC).date(),
                      wrapper=store.vault_wrapper(pw), log=TransferLog(store.home / TRANSFER_LOG))
assert result.outcome is SendOutcome.DELIVERED, result.outcome
"""
_UPLOAD = (
    "import os, boto3; from boto3.s3.transfer import TransferConfig; "
    "boto3.client('s3', endpoint_url=os.environ['BENCH_S3_ENDPOINT']).upload_file("
    "{src!r}, {bucket!r}, 'incoming/big.bin.c4gh', "
    "Config=TransferConfig(multipart_threshold={part}, multipart_chunksize={part}))"
)
