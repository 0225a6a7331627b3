"""The shapes of what is stored in MongoDB (see README, "Storage").

Current versions live in one collection per resource type (named after the type), one document per logical
resource, keyed by its id. Every version, current included, is also written to the ``history`` collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

HISTORY = "history"
CLAIMS = "conditional_claims"
COUNTERS = "counters"
JOBS = "jobs"
REPORT_ROWS = "report_rows"  # one row per patient of the registry report (storage/report_rows.py)
NOT_DELETED: dict[str, Any] = {"deleted": False}  # current documents that are not tombstones


def now_ms() -> datetime:
    """Now in UTC truncated to milliseconds, the precision BSON dates keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@lru_cache(maxsize=256)  # every version a unit of work writes has its time: a Bundle's 16 resources, twice each
def instant(value: datetime) -> str:
    """FHIR instant with millisecond precision, e.g. 2026-11-25T14:18:11.123+00:00."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def history_key(resource_type: str, resource_id: str, vid: int) -> str:
    return f"{resource_type}/{resource_id}/{vid}"


@dataclass(frozen=True)
class StoredVersion:
    """One version of a resource as read back from storage."""

    type: str
    id: str
    vid: int
    last_updated: datetime
    deleted: bool
    resource: dict[str, Any] | None
    method: str = "PUT"

    @property
    def etag(self) -> str:
        return f'W/"{self.vid}"'

    @classmethod
    def from_current(cls, resource_type: str, doc: dict[str, Any]) -> StoredVersion:
        return cls(resource_type, doc["_id"], doc["vid"], doc["lastUpdated"], doc["deleted"], doc.get("resource"))

    @classmethod
    def from_history(cls, doc: dict[str, Any]) -> StoredVersion:
        return cls(doc["type"], doc["id"], doc["vid"], doc["lastUpdated"], doc["deleted"], doc.get("resource"),
                   doc.get("method", "PUT"))


@dataclass
class ResourceWrite:
    """A new version to store: a create, an update, or a delete (``resource`` None)."""

    type: str
    id: str
    vid: int
    last_updated: datetime
    method: str  # POST | PUT | PATCH | DELETE, for history's request.method
    resource: dict[str, Any] | None
    search_values: dict[str, Any] = field(default_factory=dict)
    previous_vid: int | None = None  # None: the id is new to the store

    @property
    def deleted(self) -> bool:
        return self.resource is None

    def version(self) -> StoredVersion:
        """The version this write stores, as a read would give it back."""
        return StoredVersion(self.type, self.id, self.vid, self.last_updated, self.deleted, self.resource, self.method)

    def current_document(self, center: str | None, content: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The document of the type's collection; ``center``: decided by the store (``storage/centers.py``).
        ``content``: the resource in the form to store, when not ``resource`` itself (the store encodes it to
        BSON once for this document and the history one)."""
        return {
            "_id": self.id, "vid": self.vid, "lastUpdated": self.last_updated, "deleted": self.deleted,
            "resource": self.resource if content is None else content, "sp": self.search_values, "center": center,
        }

    def history_document(self, center: str | None, content: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "_id": history_key(self.type, self.id, self.vid), "type": self.type, "id": self.id, "vid": self.vid,
            "lastUpdated": self.last_updated, "method": self.method, "deleted": self.deleted,
            "resource": self.resource if content is None else content, "center": center,
        }
