"""Crypt4GH envelopes on a 512 MiB file: genegate against OpenSSL, the reference `crypt4gh` CLI and cp.

Two tables:
- encrypt/decrypt, baseline OpenSSL's single-core ChaCha20-Poly1305 (`openssl speed -evp
  chacha20-poly1305 -bytes 65536`, scaled to the file size; compute only, no I/O). A second
  OpenSSL row adds two SHA-256 passes (`openssl speed -evp sha256`), the work genegate does per byte
  (it hashes plaintext and ciphertext in the same pass, on a helper thread), and `cp` of the
  plaintext shows what writing 512 MiB costs on this disk.
- re-keying, baseline `cp` of the ciphertext: genegate rewrites the header and copies the payload
  with copy_file_range; the reference rewrites the header and copies in 4 KiB Python reads.

genegate cases run as `python -c` children calling transfer.encrypt_file/decrypt_file/reencrypt_file,
so their times include interpreter start, imports and the scrypt key unlock, as the CLI's do.
Each case is preceded (untimed) by removing its output and `sync`, so no case pays for the
previous one's writeback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Measurement, measure, workdir

SIZE = 512 * 1024 * 1024
PASSPHRASE = "benchmark passphrase"  # noqa: S105 - the throwaway keys of this run
# The reference CLI reads the passphrase from the environment (and prints a warning about it).
CRYPT4GH = f"C4GH_PASSPHRASE='{PASSPHRASE}' {Path(sys.executable).parent / 'crypt4gh'}"
RUNS = 5  # this VM's page-cache writes vary run to run; 5 runs steady the median


def run() -> list[tuple[str, list[Measurement], str | None]]:
    """Both tables, each with its baseline row name."""
    work = workdir() / "crypt4gh"
    work.mkdir(exist_ok=True)
    plain, sealed, out = work / "plain.bin", work / "plain.bin.c4gh", work / "out"
    _random_file(plain, SIZE)
    subprocess.run(_python(_KEYS, work=work, pw=PASSPHRASE), check=True)
    try:
        crypto = _crypto_rows(work, plain, sealed, out)
        rekey = _rekey_rows(work, sealed, out, next(r for r in crypto if r.name == STARTUP))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mib = SIZE // 2**20
    return [
        (f"crypt4gh encrypt/decrypt, {mib} MiB (x OpenSSL single-core ChaCha20-Poly1305)", crypto, OPENSSL),
        (f"crypt4gh re-keying, {mib} MiB (x cp)", rekey, CP),
    ]


OPENSSL = "openssl speed chacha20-poly1305, 64 KiB blocks (compute only)"
CP = "cp ciphertext"
STARTUP = "genegate start-up only (interpreter and imports)"


def _crypto_rows(work: Path, plain: Path, sealed: Path, out: Path) -> list[Measurement]:
    chacha, sha = _openssl_rate("chacha20-poly1305"), _openssl_rate("sha256")
    lab_pub, lab_sec = work / "lab.pub", work / "lab.sec"
    rows = [
        Measurement(OPENSSL, SIZE / chacha, 0.0, 1),
        Measurement(
            "openssl ChaCha20-Poly1305 + 2 x SHA-256 (compute only)", SIZE / chacha + 2 * SIZE / sha, 0.0, 1
        ),
        _case(STARTUP, _python(_PRELUDE + "pass"), out),
        _case("cp plaintext (what writing 512 MiB costs here)", ["cp", str(plain), str(out)], out),
        _case("genegate encrypt_file", _python(_ENCRYPT, src=plain, dst=sealed, pub=lab_pub), sealed),
        _case(
            "crypt4gh encrypt (reference CLI)",
            _shell(f"{CRYPT4GH} encrypt --recipient_pk {lab_pub}", plain, out),
            out,
        ),
        _case("genegate encrypt_stream to /dev/null", _python(_ENCRYPT_NULL, src=plain, pub=lab_pub), out),
        _case(
            "crypt4gh encrypt to /dev/null",
            _shell(f"{CRYPT4GH} encrypt --recipient_pk {lab_pub}", plain),
            out,
        ),
        _case(
            "genegate decrypt_file", _python(_DECRYPT, src=sealed, dst=out, sec=lab_sec, pw=PASSPHRASE), out
        ),
        _case(
            "crypt4gh decrypt (reference CLI)", _shell(f"{CRYPT4GH} decrypt --sk {lab_sec}", sealed, out), out
        ),
        _case(
            "genegate decrypt_stream to /dev/null",
            _python(_DECRYPT_NULL, src=sealed, sec=lab_sec, pw=PASSPHRASE),
            out,
        ),
        _case("crypt4gh decrypt to /dev/null", _shell(f"{CRYPT4GH} decrypt --sk {lab_sec}", sealed), out),
    ]
    out.unlink(missing_ok=True)
    return _with_net_rows(
        rows, ("genegate encrypt_stream to /dev/null", "genegate decrypt_stream to /dev/null")
    )


def _rekey_rows(work: Path, sealed: Path, out: Path, startup: Measurement) -> list[Measurement]:
    paths = {
        "src": sealed,
        "dst": out,
        "sec": work / "lab.sec",
        "pw": PASSPHRASE,
        "pub": work / "partner.pub",
    }
    rekey = f"{CRYPT4GH} reencrypt --sk {work / 'lab.sec'} --recipient_pk {work / 'partner.pub'}"
    rows = [
        _case(CP, ["cp", str(sealed), str(out)], out),
        startup,
        _case("genegate reencrypt_file", _python(_REENCRYPT.replace("HASH", "False"), **paths), out),
        _case(
            "genegate reencrypt_file(hash_payload=True)",
            _python(_REENCRYPT.replace("HASH", "True"), **paths),
            out,
        ),
        _case("crypt4gh reencrypt (reference CLI)", _shell(rekey, sealed, out), out),
    ]
    return _with_net_rows(rows, ("genegate reencrypt_file",))


def _with_net_rows(rows: list[Measurement], names: tuple[str, ...]) -> list[Measurement]:
    """After each named row, a derived row without the start-up time: the library's own work."""
    startup = next(r.seconds for r in rows if r.name == STARTUP)
    out = []
    for row in rows:
        out.append(row)
        if row.name in names:
            out.append(
                Measurement(
                    f"{row.name}, less start-up (derived)", row.seconds - startup, row.peak_mib, row.runs
                )
            )
    return out


# Made in a child so that this process stays small: a spawned child's peak RSS (getrusage) can
# never read below its parent's at the spawn, so the parent's size is the floor of every peak.
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
_REENCRYPT = (
    _PRELUDE + f"reencrypt_file(Path({{src!r}}), Path({{dst!r}}), {_LAB_KEYS}, {_PUBLIC}, hash_payload=HASH)"
)
_TO_NULL = (
    "\nwith open({src!r}, 'rb', buffering=0) as src, open('/dev/null', 'wb', buffering=0) as dst:\n    "
)
_ENCRYPT_NULL = (
    _PRELUDE + "from transfer import encrypt_stream" + _TO_NULL + f"encrypt_stream(src, dst, {_PUBLIC})"
)
_DECRYPT_NULL = (
    _PRELUDE + "from transfer import decrypt_stream" + _TO_NULL + f"decrypt_stream(src, dst, {_LAB_KEYS})"
)


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
    """`size` random bytes (incompressible, like a CRAM), written once per run in 1 MiB pieces."""
    with path.open("wb") as f:
        for _ in range(size // 2**20):
            f.write(os.urandom(2**20))
