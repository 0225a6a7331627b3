"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history).

Newest first, keyset-paged on (lastUpdated, type, id, version number): a ``next`` link names the last entry its
page showed, a ``previous`` link the first, so pages stay correct while new versions arrive (they are newer and
never shift older pages). A ``previous`` page holds the versions just newer than the first entry it names.

``_since`` keeps the versions stored at or after an instant; ``_at`` the versions that were current at some
point of a period (stored in it, or stored before it and superseded after its start, or never), found by one
aggregation that looks up each older version's successor (``ResourceStore.history_during``).

``Bundle.total`` is the number of versions of the whole history (with ``_since``, ``_at``), counted as a search
counts without ``_total``: up to ``total_budget`` versions, concurrently with the page; more, and it is omitted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, NotFound
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.dates import parse_instant_param
from fhir_server.resources import SERVED_TYPES, require_supported_type
from fhir_server.search.paging import decode_page_token, encode_page_token
from fhir_server.search.values import DateRange, parse_date_range
from fhir_server.services import Services
from fhir_server.storage.concurrency import both
from fhir_server.storage.documents import StoredVersion, instant
from fhir_server.storage.store import HistoryKey, Period, Session

_HISTORY_PARAMS = {"_since", "_at", "_count", "_page", "_format", "_pretty"}
_KEPT = ("_since", "_at", "_count")  # the parameters a page link repeats
# _at: the prefixes a period may take, and the [start, end) each makes of a value's own range
_AT_PREFIXES: dict[str, Callable[[DateRange], Period]] = {
    "eq": lambda r: (r.lo, r.hi), "ge": lambda r: (r.lo, None), "gt": lambda r: (r.hi, None),
    "le": lambda r: (None, r.hi), "lt": lambda r: (None, r.lo),
}


# the order of history pages (storage's history order); a token is for this order only
_PAGE_KEY = (("lastUpdated", -1), ("type", -1), ("id", -1), ("vid", -1))


def _encode_page(ctx: RequestContext, version: StoredVersion, *, previous: bool = False) -> str:
    """The ``_page`` token of the page after ``version`` (``previous``: before it), bound to the caller
    (``search.paging``)."""
    return encode_page_token([version.last_updated, version.type, version.id, version.vid], _PAGE_KEY,
                             meta={"d": "prev"} if previous else None, owner=ctx.caller)


def _decode_page(ctx: RequestContext, token: str) -> tuple[HistoryKey, bool]:
    """The key a ``_page`` token names, and whether it asks for the page before it."""
    values, meta = decode_page_token(token, _PAGE_KEY, owner=ctx.caller)
    at, resource_type, resource_id, vid = values
    if not (isinstance(at, datetime) and isinstance(resource_type, str) and isinstance(resource_id, str)
            and isinstance(vid, int)):
        raise InvalidRequest(f"Invalid _page token '{token}'", code="invalid", expression=("_page",))
    return (at, resource_type, resource_id, vid), meta.get("d") == "prev"


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
    period = _period([value for name, value in params if name == "_at"])
    count = _count(args, services)
    after, newer = _decode_page(ctx, args["_page"]) if "_page" in args else (None, False)
    if resource_id is not None and resource_type is not None \
            and await services.store.current(ctx, resource_type, resource_id, session=session) is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    store = services.store
    types = [resource_type] if resource_type else list(SERVED_TYPES)  # the types an _at aggregation reads
    if period is None:
        listing = store.history(ctx, resource_type, resource_id, since=since, after_key=after, newer=newer,
                                limit=count + 1, session=session)
    else:
        listing = store.history_during(ctx, types, resource_id, period, since=since, after_key=after,
                                       newer=newer, limit=count + 1, session=session)
    budget = services.settings.total_budget
    total: int | None = None
    if budget:
        if period is None:
            counting = store.count_history(ctx, resource_type, resource_id, since, session=session,
                                           limit=budget + 1)
        else:
            counting = store.count_history_during(ctx, types, resource_id, period, since=since, session=session,
                                                  limit=budget + 1)
        versions, counted = await both(session, listing, counting)
        total = counted if counted <= budget else None
    else:
        versions = await listing
    page, more = versions[:count], len(versions) > count
    if after is None and not more:
        total = len(page)  # the whole history is on this page: its total costs nothing
    if newer:  # read oldest first from the boundary: shown newest first, and the page it came from follows
        page.reverse()
    base = ctx.url(*[p for p in (resource_type, resource_id) if p], "_history")
    kept = [(k, v) for k, v in params if k in _KEPT]
    links = [{"relation": "self", "url": _with_query(base, params if not unknown else kept)}]
    if after is not None:
        links.append({"relation": "first", "url": _with_query(base, kept)})
    if page and (more if newer else after is not None):
        token = _encode_page(ctx, page[0], previous=True)
        links.append({"relation": "previous", "url": _with_query(base, [*kept, ("_page", token)])})
    if page and (newer or more):
        links.append({"relation": "next", "url": _with_query(base, [*kept, ("_page", _encode_page(ctx, page[-1]))])})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    return with_entries(bundle, [_entry(ctx, v) for v in page])


def _period(values: list[str]) -> Period | None:
    """The period of ``_at`` (http.html#history: the versions current at some point in it), each value a date,
    dateTime or instant taken as its range (search.html#date), optionally with a prefix ``ge``, ``gt``, ``le``
    or ``lt`` opening it on one side; several values: the period they have in common."""
    if not values:
        return None
    start: datetime | None = None
    end: datetime | None = None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in _AT_PREFIXES else ("eq", raw)
        try:
            lo, hi = _AT_PREFIXES[prefix](parse_date_range(text))
        except ValueError:
            raise InvalidRequest(f"Invalid _at '{raw}': expected a date, dateTime or instant, with an optional "
                                 "prefix eq, ge, gt, le or lt", code="invalid", expression=("_at",)) from None
        if lo is not None:
            start = lo if start is None else max(start, lo)
        if hi is not None:
            end = hi if end is None else min(end, hi)
    return start, end


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
