"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history).

Newest first, keyset-paged on (lastUpdated, type, id, version number): a page link names the last entry it showed, so
pages stay correct while new versions arrive (they are newer and never shift older pages).

``Bundle.total`` is the number of versions of the whole history (with ``_since``), counted as a search counts
without ``_total``: up to ``total_budget`` versions, concurrently with the page; more, and it is omitted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, NotFound
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.dates import parse_instant_param
from fhir_server.resources import require_supported_type
from fhir_server.search.paging import decode_page_token, encode_page_token
from fhir_server.services import Services
from fhir_server.storage.concurrency import both
from fhir_server.storage.documents import StoredVersion, instant
from fhir_server.storage.store import HistoryKey, Session

_HISTORY_PARAMS = {"_since", "_count", "_page", "_format", "_pretty"}


# the order of history pages (storage's history order); a token is for this order only
_PAGE_KEY = (("lastUpdated", -1), ("type", -1), ("id", -1), ("vid", -1))


def _encode_page(ctx: RequestContext, version: StoredVersion) -> str:
    """The ``_page`` token of the page after ``version``: bound to the caller (``search.paging``)."""
    return encode_page_token([version.last_updated, version.type, version.id, version.vid], _PAGE_KEY,
                             owner=ctx.caller)


def _decode_page(ctx: RequestContext, token: str) -> HistoryKey:
    values, _meta = decode_page_token(token, _PAGE_KEY, owner=ctx.caller)
    at, resource_type, resource_id, vid = values
    if not (isinstance(at, datetime) and isinstance(resource_type, str) and isinstance(resource_id, str)
            and isinstance(vid, int)):
        raise InvalidRequest(f"Invalid _page token '{token}'", code="invalid", expression=("_page",))
    return at, resource_type, resource_id, vid


def _count(params: dict[str, str], services: Services) -> int:
    raw = params.get("_count")
    if raw is None:
        return services.settings.history_default_count
    if not raw.isdigit():
        raise InvalidRequest(f"Invalid _count '{raw}'", code="invalid", expression=("_count",))
    return min(int(raw), services.settings.max_count)


async def history(ctx: RequestContext, services: Services, resource_type: str | None,
                  resource_id: str | None, params: list[tuple[str, str]], *,
                  session: Session = None) -> dict[str, Any]:
    """The history Bundle; with a transaction's ``session`` (a GET entry of a transaction Bundle) it includes
    what the transaction wrote before it."""
    if resource_type is not None:
        require_supported_type(resource_type)
    args = dict(params)
    unknown = sorted(set(args) - _HISTORY_PARAMS)
    if unknown and ctx.handling_strict:
        raise InvalidRequest(f"Unknown history parameter(s): {', '.join(unknown)}", code="not-supported")
    since = parse_instant_param("_since", args["_since"]) if "_since" in args else None
    count = _count(args, services)
    after = _decode_page(ctx, args["_page"]) if "_page" in args else None
    if resource_id is not None and resource_type is not None \
            and await services.store.current(ctx, resource_type, resource_id, session=session) is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    listing = services.store.history(ctx, resource_type, resource_id, since=since, after_key=after,
                                     limit=count + 1, session=session)
    budget = services.settings.total_budget
    total: int | None = None
    if budget:
        counting = services.store.count_history(ctx, resource_type, resource_id, since, session=session,
                                                limit=budget + 1)
        versions, counted = await both(session, listing, counting)
        total = counted if counted <= budget else None
    else:
        versions = await listing
    page, more = versions[:count], len(versions) > count
    if after is None and not more:
        total = len(page)  # the whole history is on this page: its total costs nothing
    base = ctx.url(*[p for p in (resource_type, resource_id) if p], "_history")
    kept = [(k, v) for k, v in params if k in ("_since", "_count")]
    links = [{"relation": "self", "url": _with_query(base, params if not unknown else kept)}]
    if more and page:
        links.append({"relation": "next", "url": _with_query(base, [*kept, ("_page", _encode_page(ctx, page[-1]))])})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    return with_entries(bundle, [_entry(ctx, v) for v in page])


def _with_query(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(params)}" if params else base


def _entry(ctx: RequestContext, version: StoredVersion) -> dict[str, Any]:
    url = ctx.url(version.type, version.id)
    entry: dict[str, Any] = {"fullUrl": url}
    if version.resource is not None:
        entry["resource"] = version.resource
    method = version.method if version.method in ("POST", "PUT", "DELETE") else "PUT"  # PATCH is an update
    request_url = version.type if method == "POST" else f"{version.type}/{version.id}"
    entry["request"] = {"method": method, "url": request_url}
    status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[method]
    if method == "PUT" and version.vid == 1:
        status = "201 Created"
    entry["response"] = {"status": status, "etag": version.etag, "lastModified": instant(version.last_updated)}
    return entry
