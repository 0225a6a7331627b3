"""read and vread (https://hl7.org/fhir/R4/http.html#read, #vread), with conditional read (304).

``session``: a transaction's, so that a GET entry of a transaction Bundle sees what the transaction wrote.
"""

from __future__ import annotations

from datetime import datetime

from fhir_server.context import RequestContext
from fhir_server.errors import Gone, NotFound
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.versioning import etag_matches
from fhir_server.services import Services
from fhir_server.storage.store import DbSession


async def read(ctx: RequestContext, services: Services, resource_type: str, resource_id: str, *,
               if_none_match: str | None = None, if_modified_since: datetime | None = None,
               session: DbSession | None = None) -> InteractionResult:
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
    return InteractionResult(200, current.resource, current)


async def vread(ctx: RequestContext, services: Services, resource_type: str, resource_id: str,
                version_id: str, *, session: DbSession | None = None) -> InteractionResult:
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
    return InteractionResult(200, version.resource, version)
