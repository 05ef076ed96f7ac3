"""Ranged readers for the probe (S3 ranged GETs, bytes in memory) and its budgeted block cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from alertfusion.aws import error_code, if_match

#: read granularity: one ranged GET fetches at least this much
BLOCK_BYTES = 64 * 1024
MAX_REQUESTS = 12
MAX_BYTES_READ = 4 * 1024 * 1024
#: chunks, boxes or elements a parser walks at most before it gives up
MAX_CHUNKS = 64


class RangeReader(Protocol):
    """Random access to an object of known size (an S3 object through ranged GETs)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end of the object)."""
        ...


class BytesReader:
    """A RangeReader over bytes in memory (tests, and callers that hold the file)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.requests = 0

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        self.requests += 1
        return self._data[offset : offset + length]


@dataclass(frozen=True)
class ObjectHead:
    """What HeadObject would say about an S3 object, plus its first bytes."""

    size: int
    content_type: str | None
    etag: str | None
    head: bytes


def read_object_head(
    client: Any,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    etag: str | None = None,
) -> ObjectHead:
    """One ranged ``GetObject`` for the first block: size (from ``Content-Range``),
    Content-Type and ETag come with it, so the starter needs no separate HeadObject.
    S3 answers any range on an empty object with 416 InvalidRange: then HeadObject says
    what there is. With `etag` the read is pinned to that object (``If-Match``): S3 answers
    PreconditionFailed when the key holds other bytes now. Other errors (NoSuchKey...)
    propagate."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, **if_match(etag)}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        response = client.get_object(Range=f"bytes=0-{BLOCK_BYTES - 1}", **kwargs)
    except ClientError as exc:
        if error_code(exc) != "InvalidRange":
            raise
        head = client.head_object(**kwargs)
        return ObjectHead(
            size=int(head.get("ContentLength") or 0),
            content_type=head.get("ContentType"),
            etag=_etag(head),
            head=b"",
        )
    body = response["Body"]
    try:
        data = bytes(body.read())
    finally:
        body.close()
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    size = int(total) if total.isdigit() else int(response.get("ContentLength") or len(data))
    return ObjectHead(size, response.get("ContentType"), _etag(response), data)


def _etag(response: dict[str, Any]) -> str | None:
    return str(response.get("ETag") or "").strip('"') or None


class S3RangeReader:
    """Ranged ``GetObject`` calls on one S3 object version (`prefetched`: its first bytes,
    already read, served without a request), each pinned to `etag` when given."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        size: int,
        *,
        version_id: str | None = None,
        etag: str | None = None,
        prefetched: bytes = b"",
    ) -> None:
        self._client = client
        self._etag = etag
        self._bucket = bucket
        self._key = key
        self._size = size
        self._version_id = version_id
        self._prefetched = prefetched
        self.requests = 0

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self._size:
            return b""
        if min(self._size, offset + length) <= len(self._prefetched):
            return self._prefetched[offset : offset + length]
        self.requests += 1
        end = min(self._size, offset + length) - 1
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "Range": f"bytes={offset}-{end}",
            **if_match(self._etag),
        }
        if self._version_id:
            kwargs["VersionId"] = self._version_id
        body = self._client.get_object(**kwargs)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()


class BudgetExceeded(Exception):
    """A read would pass MAX_REQUESTS or MAX_BYTES_READ."""


class BlockCache:
    """Block cache over a RangeReader with a hard budget of requests and bytes."""

    def __init__(self, reader: RangeReader) -> None:
        self._reader = reader
        self.size = reader.size
        self._spans: list[tuple[int, bytes]] = []
        self.requests = 0
        self.bytes_read = 0

    def read(self, offset: int, length: int, *, block: int = BLOCK_BYTES) -> bytes:
        """Exactly the bytes in [offset, offset+length) clipped to the object."""
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        end = min(self.size, offset + length)
        for start, data in self._spans:
            if start <= offset and end <= start + len(data):
                return data[offset - start : end - start]
        fetch = max(end - offset, block)
        if self.requests >= MAX_REQUESTS or self.bytes_read + fetch > MAX_BYTES_READ:
            raise BudgetExceeded
        data = self._reader.read(offset, fetch)
        self.requests += 1
        self.bytes_read += len(data)
        self._spans.append((offset, data))
        return data[: end - offset]
