"""read and vread (https://hl7.org/fhir/R4/http.html#read, #vread), with conditional read (304; a vread too,
on ``If-None-Match``).

``_summary`` and ``_elements`` apply to a read as to a search (http.html#read: "the search parameter _summary can be
used when reading a resource ... The same applies to the _elements parameter"): the resource comes back shaped
and marked SUBSETTED (:mod:`fhir_server.interactions.shaping`). ``_summary=count`` counts a search's matches and
means nothing for one resource: a 400.

``session``: a transaction's, so that a GET entry of a transaction Bundle sees what the transaction wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import Gone, InvalidRequest, NotFound
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.shaping import select_elements, summarize
from fhir_server.interactions.versioning import etag_matches
from fhir_server.search.parse import element_names
from fhir_server.services import Services
from fhir_server.storage.documents import StoredVersion
from fhir_server.storage.store import DbSession

READ_SUMMARY_VALUES = ("true", "text", "data", "false")


@dataclass(frozen=True)
class Shape:
    """The ``_summary`` and ``_elements`` of a read or vread (search.html#summary, #elements)."""

    summary: str | None = None
    elements: tuple[str, ...] = ()

    @classmethod
    def of(cls, params: Sequence[tuple[str, str]]) -> Shape:
        """From the request's query parameters; a ``_summary`` a read cannot honour is a 400."""
        summary: str | None = None
        elements: tuple[str, ...] = ()
        for name, value in params:
            if name == "_summary":
                if value not in READ_SUMMARY_VALUES:
                    raise InvalidRequest(f"_summary: {value!r} is not one of {', '.join(READ_SUMMARY_VALUES)} "
                                         "(count applies to a search)", code="invalid")
                summary = value
            elif name == "_elements":
                elements = element_names(value)
        return cls(summary, elements)

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        return select_elements(summarize(resource, self.summary), self.elements)


async def read(ctx: RequestContext, services: Services, resource_type: str, resource_id: str, *,
               if_none_match: str | None = None, if_modified_since: datetime | None = None,
               shape: Shape = Shape(), session: DbSession | None = None) -> InteractionResult:
    """The current version; 304 (no body) when the client's copy, named by ``If-None-Match`` or
    ``If-Modified-Since``, is current; 410 for a deleted resource (like a vread of its deletion)."""
    current = await services.store.current(ctx, resource_type, resource_id, session=session)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if current.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted", headers={"ETag": current.etag})
    if if_none_match is not None and etag_matches(if_none_match, current.vid):
        return InteractionResult(304, None, current)
    if if_modified_since is not None and current.last_updated.replace(microsecond=0) <= if_modified_since:
        return InteractionResult(304, None, current)
    return InteractionResult(200, _shaped(current.resource, shape), current)


async def vread(ctx: RequestContext, services: Services, resource_type: str, resource_id: str,
                version_id: str, *, if_none_match: str | None = None, shape: Shape = Shape(),
                session: DbSession | None = None) -> InteractionResult:
    """One version; 304 (no body) when ``If-None-Match`` names it (RFC 9110 13.1.2: a version's content never
    changes, so a client holding it holds its current representation; only ``$meta-add`` and ``$meta-delete``
    change its meta, which R4 has them do in place)."""
    version = await readable_version(ctx, services, resource_type, resource_id, version_id, session=session)
    if if_none_match is not None and etag_matches(if_none_match, version.vid):
        return InteractionResult(304, None, version)
    return InteractionResult(200, _shaped(version.resource, shape), version)


async def readable_version(ctx: RequestContext, services: Services, resource_type: str, resource_id: str,
                           version_id: str, *, session: DbSession | None = None) -> StoredVersion:
    """Version ``version_id`` of a resource, as a vread finds it: 404 when there is none, 410 for a deletion."""
    if not version_id.isdigit():
        raise NotFound(f"{resource_type}/{resource_id} has no version '{version_id}'")
    version = await services.store.version(ctx, resource_type, resource_id, int(version_id), session=session)
    if version is None:
        if await services.store.current(ctx, resource_type, resource_id, session=session) is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}")
    if version.deleted:
        raise Gone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion",
                   headers={"ETag": version.etag})
    return version


def _shaped(resource: dict[str, Any] | None, shape: Shape) -> dict[str, Any] | None:
    return shape.apply(resource) if resource is not None else None
