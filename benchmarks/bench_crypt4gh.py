"""Crypt4GH envelopes on a 512 MiB random file: genegate against OpenSSL, the reference CLI and cp.

Table 1, encrypt/decrypt; baseline OpenSSL's single-core ChaCha20-Poly1305 (`openssl speed -evp
chacha20-poly1305 -bytes 65536`, scaled to the file size: compute only, no I/O). Context rows:
- OpenSSL ChaCha20-Poly1305 plus two SHA-256 passes (`openssl speed -evp sha256`): the work genegate
  does per byte on one core (it hashes plaintext and ciphertext in the same pass, for the manifest;
  the reference tool hashes nothing), which genegate spreads over two threads;
- `dd bs=1M`: a copy through user space, the I/O floor of any file-to-file encryptor on this disk;
- genegate start-up: the interpreter and imports, without any file.
Table 2, re-keying; baseline `cp` of the ciphertext (copy_file_range). genegate rewrites the header
and copies the payload with copy_file_range; the reference copies it in 4 KiB Python reads.

"process" rows run `python -c` children calling the transfer API, like the CLI: they include the
interpreter, imports and the scrypt unlock of the lab key. "in-process" rows time the library call
alone, inside one child per run that has already imported and unlocked (their peak is that child's
VmHWM, for all cases it ran). Before each timed run the case's output is removed and dirty pages are
synced (untimed). A spawned child's getrusage peak cannot read below its parent's high-water mark,
so this module keeps the harness process small (about 15 MiB) and makes its keys in a child.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Measurement, measure, workdir

SIZE = 512 * 1024 * 1024
RUNS = 5  # this VM's page-cache writes vary from run to run; five runs steady the median
PASSPHRASE = "benchmark passphrase"  # noqa: S105 - the throwaway keys of this run
# The reference CLI reads the passphrase from the environment (and prints a warning about it).
CRYPT4GH = f"C4GH_PASSPHRASE='{PASSPHRASE}' {Path(sys.executable).parent / 'crypt4gh'}"
OPENSSL = "openssl speed chacha20-poly1305, 64 KiB blocks (compute only)"
CP = "cp ciphertext"
STARTUP = "genegate start-up only (interpreter and imports)"


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Both tables, each with its baseline row name."""
    work = workdir() / "crypt4gh"
    work.mkdir(exist_ok=True)
    try:
        _random_file(work / "plain.bin", SIZE)
        subprocess.run(_python(_KEYS, work=work, pw=PASSPHRASE), check=True)
        inside = _in_process(work)
        crypto = _crypto_rows(work, inside)
        rekey = _rekey_rows(work, inside, next(r for r in crypto if r.name == STARTUP))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mib = SIZE // 2**20
    return [
        (f"crypt4gh encrypt/decrypt, {mib} MiB (x OpenSSL single-core ChaCha20-Poly1305)", crypto, OPENSSL),
        (f"crypt4gh re-keying, {mib} MiB (x cp)", rekey, CP),
    ]


def _crypto_rows(work: Path, inside: dict[str, Measurement]) -> list[Measurement]:
    chacha, sha = _openssl_rate("chacha20-poly1305"), _openssl_rate("sha256")
    plain, sealed, out = work / "plain.bin", work / "plain.bin.c4gh", work / "out"
    pub, sec = work / "lab.pub", work / "lab.sec"
    rows = [
        Measurement(OPENSSL, SIZE / chacha, 0.0, 1),
        Measurement(
            "openssl ChaCha20-Poly1305 + 2 x SHA-256 (compute only)", SIZE / chacha + 2 * SIZE / sha, 0, 1
        ),
        _case(
            "dd bs=1M of the plaintext (I/O floor)",
            ["dd", f"if={plain}", f"of={out}", "bs=1M", "status=none"],
            out,
        ),
        _case(STARTUP, _python(_PRELUDE + "pass"), out),
        _case("genegate encrypt_file, process", _python(_ENCRYPT, src=plain, dst=sealed, pub=pub), sealed),
        inside["encrypt_file"],
        inside["encrypt_stream to /dev/null"],
        _case(
            "crypt4gh encrypt (reference CLI)",
            _shell(f"{CRYPT4GH} encrypt --recipient_pk {pub}", plain, out),
            out,
        ),
        _case(
            "crypt4gh encrypt to /dev/null", _shell(f"{CRYPT4GH} encrypt --recipient_pk {pub}", plain), out
        ),
        _case(
            "genegate decrypt_file, process",
            _python(_DECRYPT, src=sealed, dst=out, sec=sec, pw=PASSPHRASE),
            out,
        ),
        inside["decrypt_file"],
        inside["decrypt_stream to /dev/null"],
        _case("crypt4gh decrypt (reference CLI)", _shell(f"{CRYPT4GH} decrypt --sk {sec}", sealed, out), out),
        _case("crypt4gh decrypt to /dev/null", _shell(f"{CRYPT4GH} decrypt --sk {sec}", sealed), out),
    ]
    out.unlink(missing_ok=True)
    return rows


def _rekey_rows(work: Path, inside: dict[str, Measurement], startup: Measurement) -> list[Measurement]:
    sealed, out = work / "plain.bin.c4gh", work / "out"
    values = {
        "src": sealed,
        "dst": out,
        "sec": work / "lab.sec",
        "pw": PASSPHRASE,
        "pub": work / "partner.pub",
    }
    rekey = f"{CRYPT4GH} reencrypt --sk {work / 'lab.sec'} --recipient_pk {work / 'partner.pub'}"
    return [
        _case(CP, ["cp", str(sealed), str(out)], out),
        startup,
        _case("genegate reencrypt_file, process", _python(_REENCRYPT, **values), out),
        inside["reencrypt_file"],
        inside["reencrypt_file(hash_payload=True)"],
        _case("crypt4gh reencrypt (reference CLI)", _shell(rekey, sealed, out), out),
    ]


def _in_process(work: Path) -> dict[str, Measurement]:
    """Library-call times: RUNS children, each timing every case once after its imports and unlock."""
    times: dict[str, list[float]] = {}
    peak = 0.0
    for _ in range(RUNS):
        done = subprocess.run(
            _python(_IN_PROCESS, work=work, pw=PASSPHRASE), capture_output=True, text=True, check=True
        )
        for line in done.stdout.splitlines():
            name, _, value = line.rpartition(" ")
            if name == "VmHWM":
                peak = max(peak, float(value) / 1024)
            else:
                times.setdefault(name, []).append(float(value))
    return {
        name: Measurement(f"genegate {name}, in-process", statistics.median(values), peak, len(values))
        for name, values in times.items()
    }


_KEYS = (
    "from pathlib import Path; from keys.keyfiles import SecretKey, encode_secret_key\n"
    "for name in ('lab', 'partner'):\n"
    "    key = SecretKey.generate()\n"
    "    Path({work!r}, name + '.sec').write_bytes(encode_secret_key(key, {pw!r}))\n"
    "    Path({work!r}, name + '.pub').write_text(key.public_key().to_pem())\n"
)
_PRELUDE = (
    "from pathlib import Path; from keys.keyfiles import decode_secret_key, parse_public_key; "
    "from transfer import decrypt_file, encrypt_file, reencrypt_file; "
)
_LAB_KEYS = "[decode_secret_key(Path({sec!r}).read_bytes(), {pw!r}, 'sec')]"
_PUBLIC = "[parse_public_key(Path({pub!r}).read_text(), 'pub')]"
_ENCRYPT = _PRELUDE + f"encrypt_file(Path({{src!r}}), Path({{dst!r}}), {_PUBLIC})"
_DECRYPT = _PRELUDE + f"decrypt_file(Path({{src!r}}), Path({{dst!r}}), {_LAB_KEYS})"
_REENCRYPT = _PRELUDE + f"reencrypt_file(Path({{src!r}}), Path({{dst!r}}), {_LAB_KEYS}, {_PUBLIC})"
_IN_PROCESS = """
import os, time
from pathlib import Path
from keys.keyfiles import decode_secret_key, parse_public_key
from transfer import decrypt_file, decrypt_stream, encrypt_file, encrypt_stream, reencrypt_file
work = Path({work!r})
lab = [decode_secret_key((work / 'lab.sec').read_bytes(), {pw!r}, 'lab.sec')]
pub = [parse_public_key((work / 'lab.pub').read_text(), 'lab.pub')]
partner = [parse_public_key((work / 'partner.pub').read_text(), 'partner.pub')]
plain, sealed, out = work / 'plain.bin', work / 'in-process.c4gh', work / 'out'
def to_null(stream, src, keys):
    with open(src, 'rb', buffering=0) as fin, open(os.devnull, 'wb', buffering=0) as fout:
        stream(fin, fout, keys)
cases = [
    ('encrypt_file', lambda: encrypt_file(plain, sealed, pub)),
    ('encrypt_stream to /dev/null', lambda: to_null(encrypt_stream, plain, pub)),
    ('decrypt_file', lambda: decrypt_file(sealed, out, lab)),
    ('decrypt_stream to /dev/null', lambda: to_null(decrypt_stream, sealed, lab)),
    ('reencrypt_file', lambda: reencrypt_file(sealed, out, lab, partner)),
    ('reencrypt_file(hash_payload=True)',
     lambda: reencrypt_file(sealed, out, lab, partner, hash_payload=True)),
]
for name, call in cases:
    out.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    call()
    print(name, time.perf_counter() - start, flush=True)
out.unlink(missing_ok=True)
sealed.unlink()
print('VmHWM', Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])
"""


def _python(template: str, **values: object) -> list[str]:
    """`python -c` with the template's fields filled in (paths as plain strings)."""
    return [sys.executable, "-c", template.format(**{k: str(v) for k, v in values.items()})]


def _shell(command: str, stdin: Path, stdout: Path | None = None) -> list[str]:
    """sh execs the command with these redirections (so the measured process is the command itself)."""
    return ["sh", "-c", f"exec env {command} < {stdin} > {stdout or '/dev/null'}"]


def _case(name: str, argv: list[str], output: Path) -> Measurement:
    """Time argv; before each run (untimed) remove its output and flush dirty pages to disk."""
    return measure(name, argv, runs=RUNS, prepare=["sh", "-c", f"rm -f {output} && sync"])


def _openssl_rate(algorithm: str) -> float:
    """Bytes per second of `openssl speed` on 64 KiB blocks, one core."""
    done = subprocess.run(
        ["openssl", "speed", "-evp", algorithm, "-seconds", "3", "-bytes", "65536"],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"^\S+\s+([\d.]+)k\s*$", done.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"cannot read the rate from `openssl speed -evp {algorithm}`:\n{done.stdout}")
    return float(match.group(1)) * 1000


def _random_file(path: Path, size: int) -> None:
    """`size` random bytes (incompressible, like a CRAM), written in 1 MiB pieces."""
    with path.open("wb") as f:
        for _ in range(size // 2**20):
            f.write(os.urandom(2**20))
