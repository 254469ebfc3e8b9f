"""How genegate talks to S3: settings from the environment, one boto3 client, errors translated.

Configuration (environment; unset means the boto3 default):

    GENEGATE_S3_ENDPOINT_URL     an S3-compatible endpoint (MinIO, moto, a VPC endpoint)
    GENEGATE_S3_REGION           the client's region; default the recipient's declared region
    GENEGATE_S3_PROFILE          a profile of ~/.aws/config
    GENEGATE_S3_SSE_KMS_KEY_ID   SSE-KMS key id or ARN (ServerSideEncryption=aws:kms, bucket key on)
    GENEGATE_S3_ADDRESSING_STYLE auto | virtual | path
    GENEGATE_S3_PART_SIZE        multipart part size in bytes (default 64 MiB, at least 5 MiB);
                                 a file no larger than one part is a single PUT
    GENEGATE_S3_MAX_ATTEMPTS     attempts per request, the first included (default 6; 1 = no retry)

The client sends a checksum only where we give one (`request_checksum_calculation=when_required`:
every upload of ours carries its SHA-256, so botocore's default CRC32 would be a second pass over
the bytes, and it breaks some S3-compatible stores). Payload signing is left as botocore does it:
over HTTPS an upload that carries a checksum is sent UNSIGNED-PAYLOAD (the signed checksum header
binds the body); over plain HTTP (a loopback test server) every body is hashed once more to be
signed. Turning that off was tried and gained nothing measurable in benchmarks/bench_transfer.py,
so the signature keeps covering the body wherever botocore would have it do so.

Every call goes through `S3Client.call`, which turns botocore's errors into DeliveryRejected
naming the operation, the key and the S3 error code (never a body).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transfer.errors import DeliveryRejected, DestinationUnusable, RegionMismatch

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 6  # the first request and five retries
ADDRESSING_STYLES = ("auto", "virtual", "path")
MISSING = ("404", "NoSuchKey", "NotFound")


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

    def sse(self) -> dict[str, Any]:
        """The server-side encryption arguments of every PUT and multipart upload."""
        if self.sse_kms_key_id is None:
            return {}
        return {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": self.sse_kms_key_id,
            "BucketKeyEnabled": True,
        }


class S3Client:
    """One bucket through one boto3 client; botocore errors become DeliveryRejected."""

    def __init__(self, bucket: str, region: str, settings: S3Settings) -> None:
        self.bucket = bucket
        self.region = region
        self.settings = settings
        self.uri = f"s3://{bucket}"
        self._client = _make_client(settings, region)

    def call(self, operation: str, key: str, **kwargs: Any) -> dict[str, Any]:
        """One S3 operation on this bucket (`Bucket` is added); errors name it and the key."""
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self._client, _snake(operation))
        try:
            response: dict[str, Any] = method(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            raise rejected(operation, key, exc) from exc
        except BotoCoreError as exc:
            raise DeliveryRejected(
                self.uri, f"{operation} {key} failed ({type(exc).__name__}); check the endpoint and network"
            ) from exc
        return response

    def head(self, key: str) -> dict[str, Any] | None:
        """HeadObject with ChecksumMode=ENABLED (size, checksum, metadata), or None when absent."""
        from botocore.exceptions import ClientError

        try:
            return self.call("HeadObject", key, Key=key, ChecksumMode="ENABLED")
        except DeliveryRejected as exc:
            if isinstance(exc.__cause__, ClientError) and code(exc.__cause__) in MISSING:
                return None
            raise

    def get(self, key: str) -> bytes | None:
        """A small object's bytes (a manifest, a receipt), or None when absent."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            data: bytes = self.call("GetObject", key, Key=key)["Body"].read()
        except DeliveryRejected as exc:
            if isinstance(exc.__cause__, ClientError) and code(exc.__cause__) in MISSING:
                return None
            raise
        except BotoCoreError as exc:  # the body stream broke off
            raise DeliveryRejected(
                self.uri, f"GetObject {key} was cut short; run the transfer again"
            ) from exc
        return data

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (ListObjectsV2, all pages)."""
        found: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self.call("ListObjectsV2", prefix, Prefix=prefix, **token)
            found += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def abort_unfinished(self, prefix: str) -> int:
        """Abort every multipart upload under `prefix` (a crash, a failed abort); how many."""
        token: dict[str, str] = {}
        aborted = 0
        while True:
            page = self.call("ListMultipartUploads", prefix, Prefix=prefix, **token)
            for upload in page.get("Uploads", []):
                key = upload["Key"]
                self.call("AbortMultipartUpload", key, Key=key, UploadId=upload["UploadId"])
                aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            token = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def check_region(self, declared: str) -> None:
        """Refuse (before any upload) a bucket whose region is not the recipient's declared one."""
        response = self.call("GetBucketLocation", self.bucket)
        location = response.get("LocationConstraint") or "us-east-1"
        location = "eu-west-1" if location == "EU" else location
        if location != declared:
            raise RegionMismatch(
                self.uri,
                f"the bucket is in {location} but the recipient declares storage in {declared}; "
                "correct the registry or deliver to a bucket in the declared region",
            )


def _make_client(settings: S3Settings, region: str) -> Any:
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
        max_pool_connections=16,
    )
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=region)
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except BotoCoreError as exc:
        raise DestinationUnusable(
            "GENEGATE_S3_PROFILE", f"cannot make an S3 client ({type(exc).__name__}); check the profile"
        ) from exc


def code(exc: Any) -> str:
    """The S3 error code of a botocore ClientError ("" when it has none)."""
    return str(exc.response.get("Error", {}).get("Code", "")) if hasattr(exc, "response") else ""


def rejected(operation: str, key: str, exc: Any) -> DeliveryRejected:
    """DeliveryRejected for a refused operation: the operation, the key and the S3 error code."""
    return DeliveryRejected(
        f"s3 key {key}",
        f"{operation} was refused ({code(exc) or 'unknown error'}); check the bucket, credentials and policy",
    )


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
