"""Retention at s3:// destinations: every object version of a delivered release, and Object Lock.

Under s3:// every object version is deleted by VersionId, so data really goes (a plain delete in a
versioned bucket only hides it) — except a version under Object Lock: a retention date in the
future or a legal hold. That version is never deleted and never bypassed (no
BypassGovernanceRetention): it is reported as held (until its date) and tried again next run.

Buckets are reached as deliveries reach them (transfer/delivery/s3_client.py, GENEGATE_S3_*), so
botocore's errors arrive here already translated into DeliveryError.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from urllib.parse import urlparse

from transfer.delivery.s3_client import S3Client, S3Settings
from transfer.holdings import Item, Part


class S3Versions:
    """Object versions at s3:// destinations, one client per bucket configured as deliveries are
    (GENEGATE_S3_*; botocore follows a bucket in another region than GENEGATE_S3_REGION)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._clients: dict[str, S3Client] = {}

    def client(self, bucket: str) -> S3Client:
        """The bucket's client (made once)."""
        if bucket not in self._clients:
            settings = S3Settings.from_env(self._environ)
            self._clients[bucket] = S3Client(bucket, settings.region or "us-east-1", settings)
        return self._clients[bucket]

    def listed(self, item: Item, now: dt.datetime) -> Item:
        """An s3:// item with every object version under its prefix and its Object Lock state
        (HeadObject per version); any other item as it is."""
        if not item.target.startswith("s3://"):
            return item
        parsed = urlparse(item.target)
        s3, prefix = self.client(parsed.netloc), parsed.path.strip("/") + "/"
        parts: list[Part] = []
        token: dict[str, str] = {}
        while True:
            page = s3.call("ListObjectVersions", prefix, Prefix=prefix, **token)
            for v in page.get("Versions", []):
                exact = {} if v["VersionId"] == "null" else {"VersionId": v["VersionId"]}  # unversioned
                head = s3.call("HeadObject", v["Key"], Key=v["Key"], **exact)
                until = head.get("ObjectLockRetainUntilDate")
                locked = until if isinstance(until, dt.datetime) and until > now else None
                hold = head.get("ObjectLockLegalHoldStatus") == "ON"
                parts.append(Part(v["Key"], int(v.get("Size", 0)), v["VersionId"], locked, hold))
            if not page.get("IsTruncated"):
                return replace(item, parts=tuple(parts))
            token = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}

    def delete(self, item: Item, parts: Sequence[Part], removed: list[Part]) -> None:
        """Delete each version by id, never with BypassGovernanceRetention. A refusal (AccessDenied:
        no s3:DeleteObjectVersion, or a lock HeadObject did not show for want of s3:GetObjectRetention)
        fails the item, naming the operation: it is not reported as held, since no lock was seen."""
        s3 = self.client(urlparse(item.target).netloc)
        for part in parts:
            s3.call("DeleteObject", part.key, Key=part.key, VersionId=part.version)
            removed.append(part)


def is_held(part: Part, now: dt.datetime) -> bool:
    """Whether Object Lock keeps this version now: a legal hold, or a retention date still ahead."""
    return part.legal_hold or (part.held_until is not None and part.held_until > now)
