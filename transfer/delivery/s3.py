"""The `s3://bucket/prefix` destination, through boto3: staged, checksummed, verified, then published.

Configuration (environment; unset means the boto3 default):

    GENEGATE_S3_ENDPOINT_URL     an S3-compatible endpoint (MinIO, moto, a VPC endpoint)
    GENEGATE_S3_REGION           the client's region; default the recipient's declared region
    GENEGATE_S3_PROFILE          a profile of ~/.aws/config
    GENEGATE_S3_SSE_KMS_KEY_ID   SSE-KMS key id or ARN (ServerSideEncryption=aws:kms, bucket key on)
    GENEGATE_S3_ADDRESSING_STYLE auto | virtual | path
    GENEGATE_S3_PART_SIZE        multipart part size in bytes (default 64 MiB, at least 5 MiB);
                                 a file no larger than one part is a single PUT
    GENEGATE_S3_MAX_ATTEMPTS     attempts per request, the first included (default 6; 1 = no retry)

Layout: `<prefix>/<release_id>/<name>.c4gh`, the signed `delivery-manifest.json` beside them,
staging under `<prefix>/<release_id>/.partial/<transfer_id>/`. Every upload carries SHA-256
checksums (`ChecksumAlgorithm="SHA256"`; per part for multipart, so S3 stores the composite
checksum; four parts in flight at once) and our own digests in its metadata. `verify` reads
HeadObject with ChecksumMode=ENABLED and compares the size and the server's checksum with the
checksum computed here from the bytes sent (S3 servers such as moto accept a wrong client checksum,
so this comparison is ours). `publish` copies each staged object to its final key (the server
recomputes a full SHA-256, checked against the ciphertext digest), deletes the staged one, and
writes the manifest last. Before any upload, GetBucketLocation must equal the recipient's declared
region. botocore errors become DeliveryRejected naming the operation, the key and the S3 error
code.

A failed multipart upload is aborted at once; one a crash left behind (or whose abort failed too)
is aborted by the next run of the same transfer, when it looks at its staging area (`staged`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer.delivery.manifest import MANIFEST_NAME, ObjectInfo
from transfer.errors import DeliveryMismatch, DeliveryRejected, DestinationUnusable, RegionMismatch

STAGING = ".partial"
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 64 * 1024 * 1024
UPLOAD_THREADS = 4  # parts in flight at once (and at most one more read ahead)
DEFAULT_MAX_ATTEMPTS = 6  # the first request and five retries
MAX_PARTS = 10_000
COPY_LIMIT = 5 * 1024**3  # CopyObject copies at most 5 GiB in one request
META_CIPHERTEXT = "genegate-ciphertext-sha256"
META_SENT_CHECKSUM = "genegate-sent-checksum"
ADDRESSING_STYLES = ("auto", "virtual", "path")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How genegate talks to S3; see the module docstring for the environment variables."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    sse_kms_key_id: str | None = None
    addressing_style: str = "auto"
    part_size: int = DEFAULT_PART_SIZE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Settings:
        """Read GENEGATE_S3_*; a bad value raises DestinationUnusable naming the variable."""
        style = environ.get("GENEGATE_S3_ADDRESSING_STYLE", "auto")
        if style not in ADDRESSING_STYLES:
            raise DestinationUnusable(
                "GENEGATE_S3_ADDRESSING_STYLE", f"must be one of {', '.join(ADDRESSING_STYLES)}"
            )
        raw = environ.get("GENEGATE_S3_PART_SIZE", str(DEFAULT_PART_SIZE))
        if not raw.isdigit() or int(raw) < MIN_PART_SIZE:
            raise DestinationUnusable(
                "GENEGATE_S3_PART_SIZE", f"must be a whole number of bytes, at least {MIN_PART_SIZE}"
            )
        attempts = environ.get("GENEGATE_S3_MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS))
        if not attempts.isdigit() or int(attempts) < 1:
            raise DestinationUnusable(
                "GENEGATE_S3_MAX_ATTEMPTS", "must be a whole number of attempts, at least 1 (1 = no retry)"
            )
        return cls(
            endpoint_url=environ.get("GENEGATE_S3_ENDPOINT_URL") or None,
            region=environ.get("GENEGATE_S3_REGION") or None,
            profile=environ.get("GENEGATE_S3_PROFILE") or None,
            sse_kms_key_id=environ.get("GENEGATE_S3_SSE_KMS_KEY_ID") or None,
            addressing_style=style,
            part_size=int(raw),
            max_attempts=int(attempts),
        )


def sha256_checksum(hex_digest: str) -> str:
    """The base64 form S3 uses for a whole-object SHA-256."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def composite_checksum(path: Path, part_size: int) -> str:
    """What S3 stores for a multipart SHA-256 upload of `path`: the hash of the part hashes, `-N`."""
    parts = _part_digests(path, part_size)
    return base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode("ascii") + f"-{len(parts)}"


class S3Destination:
    """An `s3://bucket/prefix` destination for one release of one recipient."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        release_id: str,
        transfer_id: str,
        *,
        region: str,
        settings: S3Settings,
    ) -> None:
        self.bucket = bucket
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.root = f"{base}{release_id}/"
        self.staging = f"{self.root}{STAGING}/{transfer_id}/"
        self.uri = f"s3://{bucket}/{self.root}"
        self.region = settings.region or region
        self.settings = settings
        self._client = _client(settings, self.region)
        self._sent: dict[str, str] = {}  # name -> the checksum computed here from the bytes sent

    def check_region(self, declared: str) -> None:
        """Refuse (before any upload) a bucket whose region is not the recipient's declared one."""
        response = self._call("GetBucketLocation", self.bucket, Bucket=self.bucket)
        location = response.get("LocationConstraint") or "us-east-1"
        location = "eu-west-1" if location == "EU" else location
        if location != declared:
            raise RegionMismatch(
                f"s3://{self.bucket}",
                f"the bucket is in {location} but the recipient declares storage in {declared}; "
                "correct the registry or deliver to a bucket in the declared region",
            )

    def existing(self) -> dict[str, ObjectInfo]:
        """The published encrypted objects, with size and the ciphertext SHA-256 recorded at upload."""
        return self._list(self.root, skip_staging=True)

    def staged(self) -> dict[str, ObjectInfo]:
        """The objects this transfer staged earlier that still verify; its unfinished uploads are aborted."""
        self._abort_unfinished()
        found = self._list(self.staging, skip_staging=False)
        good: dict[str, ObjectInfo] = {}
        for name, info in found.items():
            try:
                self.verify(name, info.sha256, info.size)
            except DeliveryMismatch:
                continue
            good[name] = info
        return good

    def manifest(self) -> bytes | None:
        """The published manifest's bytes, or None."""
        from botocore.exceptions import ClientError

        key = self.root + MANIFEST_NAME
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            data: bytes = body.read()
            return data
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise _rejected("GetObject", key, exc) from exc

    def put(self, name: str, path: Path, sha256: str, size: int) -> None:
        """Upload to staging with SHA-256 checksums: one PUT, or multipart above the part size."""
        key = self.staging + name
        if size <= self.settings.part_size:
            sent = sha256_checksum(sha256)
            with open(path, "rb") as body:
                self._call(
                    "PutObject",
                    key,
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentLength=size,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=sent,
                    Metadata=_metadata(sha256, sent),
                    **self._sse(),
                )
        else:
            sent = self._multipart(key, path, sha256, size)
        self._sent[name] = sent

    def verify(self, name: str, sha256: str, size: int) -> None:
        """HeadObject: size, our recorded digest, and the server's checksum against ours."""
        self._verify(self.staging + name, name, sha256, size, self._sent.get(name))

    def publish(self, manifest_bytes: bytes) -> None:
        """Copy every staged object to its final key, verify it, delete staging; the manifest last."""
        manifest_key = self.root + MANIFEST_NAME
        self._call("DeleteObject", manifest_key, Bucket=self.bucket, Key=manifest_key)
        for name, info in sorted(self._list(self.staging, skip_staging=False).items()):
            source, final = self.staging + name, self.root + name
            self._copy(source, final, info.size)
            self._verify(final, name, info.sha256, info.size, None)
            self._call("DeleteObject", source, Bucket=self.bucket, Key=source)
        self._call(
            "PutObject",
            manifest_key,
            Bucket=self.bucket,
            Key=manifest_key,
            Body=manifest_bytes,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(manifest_bytes).digest()).decode("ascii"),
            **self._sse(),
        )

    # --- parts ---------------------------------------------------------------------------

    def _multipart(self, key: str, path: Path, sha256: str, size: int) -> str:
        part_size = max(self.settings.part_size, -(-size // MAX_PARTS))
        upload = self._call(
            "CreateMultipartUpload",
            key,
            Bucket=self.bucket,
            Key=key,
            ChecksumAlgorithm="SHA256",
            Metadata=_metadata(sha256, composite_checksum(path, part_size)),
            **self._sse(),
        )
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        digests: list[bytes] = []
        try:
            with open(path, "rb") as handle, ThreadPoolExecutor(UPLOAD_THREADS) as pool:
                pending: deque[Future[dict[str, Any]]] = deque()
                number = 0
                try:
                    while chunk := handle.read(part_size):
                        number += 1
                        digest = hashlib.sha256(chunk).digest()
                        digests.append(digest)
                        pending.append(pool.submit(self._part, key, upload_id, number, chunk, digest))
                        del chunk
                        if len(pending) > UPLOAD_THREADS:  # at most threads + 1 parts held in memory
                            parts.append(pending.popleft().result())
                    parts.extend(f.result() for f in pending)
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
            self._call(
                "CompleteMultipartUpload",
                key,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode("ascii") + f"-{len(parts)}"

    def _part(self, key: str, upload_id: str, number: int, chunk: bytes, digest: bytes) -> dict[str, Any]:
        """Upload one part with its SHA-256 checksum; its entry for CompleteMultipartUpload."""
        checksum = base64.b64encode(digest).decode("ascii")
        response = self._call(
            "UploadPart",
            key,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=chunk,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        return {"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}

    def _abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        # if this fails too, a lifecycle rule (AbortIncompleteMultipartUpload) removes what is left
        with contextlib.suppress(BotoCoreError, ClientError):
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _abort_unfinished(self) -> None:
        """Abort the multipart uploads left under this transfer's staging (a crash, a failed abort)."""
        token: dict[str, str] = {}
        while True:
            page = self._call(
                "ListMultipartUploads", self.staging, Bucket=self.bucket, Prefix=self.staging, **token
            )
            for upload in page.get("Uploads", []):
                key = upload["Key"]
                self._call(
                    "AbortMultipartUpload", key, Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
                )
            if not page.get("IsTruncated"):
                return
            token = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def _copy(self, source: str, final: str, size: int) -> None:
        args: dict[str, Any] = {"ChecksumAlgorithm": "SHA256", "MetadataDirective": "COPY", **self._sse()}
        if size <= COPY_LIMIT:
            self._call(
                "CopyObject",
                final,
                Bucket=self.bucket,
                Key=final,
                CopySource={"Bucket": self.bucket, "Key": source},
                **args,
            )
            return
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        args.pop("MetadataDirective")
        try:  # managed multipart copy for objects above 5 GiB
            self._client.copy(
                {"Bucket": self.bucket, "Key": source},
                self.bucket,
                final,
                ExtraArgs=args,
                Config=TransferConfig(multipart_chunksize=self.settings.part_size),
            )
        except ClientError as exc:
            raise _rejected("CopyObject", final, exc) from exc
        except BotoCoreError as exc:
            raise DeliveryRejected(self.uri, f"CopyObject {final} failed ({type(exc).__name__})") from exc

    def _verify(self, key: str, name: str, sha256: str, size: int, sent: str | None) -> None:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise DeliveryMismatch(
                    self.uri, f"{name} is missing after upload; run the transfer again"
                ) from exc
            raise _rejected("HeadObject", key, exc) from exc
        metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        stored = str(head.get("ChecksumSHA256") or "")
        expected = {sha256_checksum(sha256), sent or metadata.get(META_SENT_CHECKSUM, "")}
        if (
            head.get("ContentLength") != size
            or metadata.get(META_CIPHERTEXT) != sha256
            or _bare(stored) not in {_bare(e) for e in expected if e}
        ):
            raise DeliveryMismatch(
                self.uri,
                f"{name}: the stored object's size or SHA-256 checksum differs from what was sent; "
                "run the transfer again",
            )

    def _list(self, prefix: str, *, skip_staging: bool) -> dict[str, ObjectInfo]:
        found: dict[str, ObjectInfo] = {}
        token: dict[str, str] = {}
        while True:
            page = self._call("ListObjectsV2", prefix, Bucket=self.bucket, Prefix=prefix, **token)
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name == MANIFEST_NAME or (skip_staging and name.startswith(STAGING + "/")):
                    continue
                found[name] = self._info(item["Key"])
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _info(self, key: str) -> ObjectInfo:
        """Size and recorded ciphertext SHA-256; the digest is "" unless the server's checksum agrees."""
        head = self._call("HeadObject", key, Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        recorded = str(metadata.get(META_CIPHERTEXT, ""))
        stored = _bare(str(head.get("ChecksumSHA256") or ""))
        known = {_bare(metadata.get(META_SENT_CHECKSUM, ""))}
        if re.fullmatch("[0-9a-f]{64}", recorded):
            known.add(sha256_checksum(recorded))
        return ObjectInfo(int(head.get("ContentLength", -1)), recorded if stored and stored in known else "")

    def _sse(self) -> dict[str, Any]:
        if self.settings.sse_kms_key_id is None:
            return {}
        return {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": self.settings.sse_kms_key_id,
            "BucketKeyEnabled": True,
        }

    def _call(self, operation: str, key: str, **kwargs: Any) -> dict[str, Any]:
        """One S3 operation; botocore's errors become DeliveryRejected naming it and the key."""
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self._client, _snake(operation))
        try:
            response: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            raise _rejected(operation, key, exc) from exc
        except BotoCoreError as exc:
            raise DeliveryRejected(
                self.uri, f"{operation} {key} failed ({type(exc).__name__}); check the endpoint and network"
            ) from exc
        return response


def _client(settings: S3Settings, region: str) -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        region_name=region,
        s3={"addressing_style": settings.addressing_style},
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=region)
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except BotoCoreError as exc:
        raise DestinationUnusable(
            "GENEGATE_S3_PROFILE", f"cannot make an S3 client ({type(exc).__name__}); check the profile"
        ) from exc


def _metadata(sha256: str, sent: str) -> dict[str, str]:
    return {META_CIPHERTEXT: sha256, META_SENT_CHECKSUM: sent}


def _part_digests(path: Path, part_size: int) -> list[bytes]:
    digests = []
    with open(path, "rb") as handle:
        while chunk := handle.read(part_size):
            digests.append(hashlib.sha256(chunk).digest())
    return digests or [hashlib.sha256(b"").digest()]


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if hasattr(exc, "response") else ""


def _rejected(operation: str, key: str, exc: Any) -> DeliveryRejected:
    code = _code(exc) or "unknown error"
    return DeliveryRejected(
        f"s3 key {key}", f"{operation} was refused ({code}); check the bucket, credentials and policy"
    )


def _bare(checksum: str) -> str:
    """A checksum without the `-<parts>` suffix some servers add to a composite value."""
    return checksum.split("-", maxsplit=1)[0]


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
