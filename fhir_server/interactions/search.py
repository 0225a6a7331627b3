"""search: executes what ``fhir_server.search`` parsed and compiled (https://hl7.org/fhir/R4/search.html).

Chained parameters and ``_has`` become sub-queries whose results turn into ``$in`` filters; ``_include`` and
``_revinclude`` fetch by id; paging is keyset (a ``_page`` token names the boundary row, so pages stay
correct while data changes). Every read goes through ``ResourceStore`` and so through the access filter.

``Bundle.total`` (search.html#total): ``_total=accurate`` and ``_total=estimate`` count every match (the
estimate is exact); ``_summary=count`` and ``_count=0`` count; ``_total=none`` omits it. Without ``_total``
(clients such as fhirpy page by it) the matches are counted with a budget, ``total_budget``: counting stops
after budget + 1 matches, and the total is given when there are at most budget of them, on every page (it is
the total of the search, not of the page), otherwise omitted. Counting reads every match it counts (the
``deleted`` flag and ``$elemMatch`` conditions need the documents), so the budget bounds its cost; it runs
concurrently with the page. A first page that holds the whole result gives its total for free.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, Issue, operation_outcome
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.shaping import select_elements, summarize
from fhir_server.interactions.terminology_support import expand_request
from fhir_server.resources import SERVED_TYPES, SUPPORTED_TYPES, require_supported_type
from fhir_server.search import (
    CompiledSearch,
    ParsedSearch,
    after_filter,
    compile_search,
    decode_page_token,
    encode_page_token,
    parse_search,
    semijoin,
    sort_values,
)
from fhir_server.search.compile import HasJoin, IncludePlan
from fhir_server.search.paging import at_filter
from fhir_server.search.param_types import reference
from fhir_server.search.param_types.common import MATCH_NOTHING
from fhir_server.services import Services
from fhir_server.storage.access import restrict
from fhir_server.storage.concurrency import both, gather
from fhir_server.storage.store import Session

PAGE = "_page"
_MAX_INCLUDE_ROUNDS = 4
_HAS_BATCH = 5000  # resources per read of a streamed ``_has`` (its row of references stays far below 16 MB)
_RESULT_PARAMS = frozenset({"_sort", "_count", "_total", "_summary", "_elements", "_include", "_revinclude",
                            "_include:iterate", "_revinclude:iterate", "_contained", "_containedType"})


@dataclass
class Page:
    docs: list[dict[str, Any]]
    next_key: tuple[list[Any], str] | None  # (sort values, type) of the row the next page starts after
    prev_key: tuple[list[Any], str] | None


# -- filters -----------------------------------------------------------------------------------------------


async def _expansions(ctx: RequestContext, services: Services, parsed: ParsedSearch) -> dict[Any, Any]:
    """Code sets for :below/:above/:in/:not-in, from CodeSystems and ValueSets stored on the server."""
    requests = parsed.terminology_requests()
    if not requests:
        return {}

    return {request: await expand_request(ctx, services, request) for request in requests}


async def resolve_filter(ctx: RequestContext, services: Services, compiled: CompiledSearch,
                         session: Session = None) -> dict[str, Any]:
    """The compiled filter with chains and ``_has`` resolved into ``$in`` terms (recursively)."""
    terms = [compiled.filter] if compiled.filter else []
    for chain in compiled.chains:
        ids_by_type: dict[str, list[str]] = {}
        for target_type, inner in chain.targets:
            inner_filter = await resolve_filter(ctx, services, inner, session)
            docs = await services.store.find(ctx, target_type, inner_filter, projection={"_id": 1},
                                             session=session)
            ids_by_type[target_type] = [d["_id"] for d in docs]
        terms.append(chain.join_filter(ids_by_type))
    for has in compiled.has:
        inner_filter = await resolve_filter(ctx, services, has.inner, session)
        terms.append(has.join_filter(await _referenced_ids(ctx, services, has, inner_filter, session)))
    if not terms:
        return {}
    return terms[0] if len(terms) == 1 else {"$and": terms}


async def _referenced_ids(ctx: RequestContext, services: Services, has: HasJoin, inner_filter: dict[str, Any],
                          session: Session) -> set[str]:
    """Ids of the ``has.target_type`` resources that ``has.source_type`` documents matching ``inner_filter``
    refer to (``_has``). Collected by MongoDB into one set of strings: decoding every source document in
    Python cost about as much again as the query."""
    pipeline = has.referenced_ids_pipeline(inner_filter)
    found = await services.store.aggregate(ctx, has.source_type, pipeline, session=session)
    return set(found[0]["ids"]) if found else set()


def compartment_filter(services: Services, compartment: tuple[str, str], resource_type: str) -> dict[str, Any]:
    """Resources of ``resource_type`` in the compartment ``{kind}/{id}`` (the R4 CompartmentDefinitions)."""
    kind, ident = compartment
    if resource_type == kind:
        return {"_id": ident}
    params = services.search_parameters.compartment_params(kind, resource_type)
    if not params:
        return dict(MATCH_NOTHING)
    ref = f"{kind}/{ident}"
    terms = [{reference.path(p): ref} for p in params]
    return terms[0] if len(terms) == 1 else {"$or": terms}


async def _parse(ctx: RequestContext, services: Services, resource_type: str | None,
                 params: Iterable[tuple[str, str]], *, strict: bool) -> ParsedSearch:
    """Parse; a parameter this process does not know may have been defined through another process, so on an
    unknown parameter the registry is synchronised with the database and the query parsed again."""
    params = list(params)

    def attempt() -> ParsedSearch:
        return parse_search(services.search_parameters, resource_type, params, strict=strict,
                            base_url=ctx.base_url, max_count=services.settings.max_count)

    try:
        parsed = attempt()
    except InvalidRequest as exc:
        if not any(i.code == "not-supported" for i in exc.issues) or not await services.sync_conformance():
            raise
        return attempt()
    if parsed.ignored and await services.sync_conformance():
        return attempt()
    return parsed


async def compiled_filter(ctx: RequestContext, services: Services, resource_type: str,
                          params: list[tuple[str, str]], session: Session = None) -> dict[str, Any]:
    """The MongoDB filter of a search (for streaming consumers such as bulk export's ``_typeFilter``)."""
    parsed = await _parse(ctx, services, resource_type, params, strict=True)
    compiled = compile_search(parsed, expansions=await _expansions(ctx, services, parsed),
                              registry=services.search_parameters)
    return await resolve_filter(ctx, services, compiled, session)


def _refuse_result_parameters(params: list[tuple[str, str]]) -> None:
    result_params = sorted({name for name, _ in params if name.split(":")[0] in
                            {p.split(":")[0] for p in _RESULT_PARAMS}})
    if result_params:
        raise InvalidRequest(f"Conditional criteria cannot use {', '.join(result_params)}", code="invalid")


async def find_matching(ctx: RequestContext, services: Services, resource_type: str,
                        params: list[tuple[str, str]], *, session: Session = None,
                        limit: int = 0) -> list[dict[str, Any]]:
    """Current documents matching conditional criteria. Strict: an unknown parameter would widen the match,
    so it is an error, as are result parameters."""
    _refuse_result_parameters(params)
    query = await compiled_filter(ctx, services, resource_type, params, session)
    return await services.store.find(ctx, resource_type, query, limit=limit, projection={"sp": 0},
                                     session=session)


async def find_matching_of_types(ctx: RequestContext, services: Services,
                                 criteria: dict[str, list[list[tuple[str, str]]]], counter: str, *,
                                 session: Session = None, limit: int = 2,
                                 ) -> tuple[dict[str, list[list[dict[str, Any]]]], tuple[int, str]]:
    """``find_matching`` for several sets of criteria, of one or several types, in one round trip to MongoDB
    (a transaction Bundle's ``ifNoneExist``): per type, the matches of each set, at most ``limit`` each; and the
    value of the store's ``counter`` (the conformance epoch), read by the same command."""
    filters: dict[str, list[dict[str, Any]]] = {}
    for resource_type, each in criteria.items():
        for params in each:
            _refuse_result_parameters(params)
        filters[resource_type] = [await compiled_filter(ctx, services, resource_type, params, session)
                                  for params in each]
    return await services.store.find_each_of_types_and_counter(ctx, filters, counter, limit=limit, session=session)


# -- the search interaction --------------------------------------------------------------------------------


async def search(ctx: RequestContext, services: Services, resource_type: str | None,
                 params: list[tuple[str, str]], *, compartment: tuple[str, str] | None = None,
                 session: Session = None) -> dict[str, Any]:
    page_token = next((v for k, v in params if k == PAGE), None)
    criteria = [(k, v) for k, v in params if k != PAGE]
    parsed = await _parse(ctx, services, resource_type, criteria, strict=ctx.handling_strict)
    compiled = compile_search(parsed, expansions=await _expansions(ctx, services, parsed),
                              registry=services.search_parameters)
    types = [resource_type] if resource_type else list(parsed.types or SUPPORTED_TYPES)
    for t in types:
        require_supported_type(t)
    if compartment and not resource_type:  # every type of the compartment (``Patient/[id]/*``), none outside
        types = [t for t in types if compartment_filter(services, compartment, t) != MATCH_NOTHING]
    count = parsed.count if parsed.count is not None else services.settings.default_count
    streamed = _streamed_has(ctx, services, parsed, compiled, types, compartment, count, page_token)
    query = await resolve_filter(ctx, services, streamed.outer if streamed else compiled, session)
    filters = {t: restrict(query, compartment_filter(services, compartment, t)) if compartment else query
               for t in types}
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if parsed.summary == "count":
        bundle["total"] = await _total(ctx, services, filters, session)
        bundle["link"] = [{"relation": "self", "url": _url(ctx, resource_type, compartment, parsed, None)}]
        return bundle
    # The includes need the page, not the count: they follow the page while the budgeted count runs beside both.
    if streamed is not None:
        has = await _streamed_ids(ctx, services, streamed, session)
        paging = _streamed_page_and_includes(ctx, services, has, query, compiled, count, page_token, session)
        counting = _streamed_counting(ctx, services, parsed, has, query, session)
    else:
        paging = _page_and_includes(ctx, services, filters, compiled, count, page_token, session)
        counting = _counting(ctx, services, parsed, filters, count, session)
    if counting is None:
        page, included = await paging
        total = None
    else:
        total, (page, included) = await both(session, counting, paging)
    if total is None and parsed.total is None and page_token is None and page.next_key is None:
        total = len(page.docs)  # the whole result is on this page: the total costs nothing
    if total is not None:
        bundle["total"] = total
    entries = [_entry(ctx, doc, "match", parsed) for doc in page.docs]
    entries += [_entry(ctx, doc, "include", parsed) for doc in included]
    if parsed.ignored:
        entries.append(_ignored_outcome(parsed))
    bundle["link"] = _links(ctx, resource_type, compartment, parsed, compiled, page, page_token)
    return with_entries(bundle, entries)


async def _page_and_includes(ctx: RequestContext, services: Services, filters: dict[str, Any],
                             compiled: CompiledSearch, count: int, token: str | None,
                             session: Session) -> tuple[Page, list[dict[str, Any]]]:
    page = await _page(ctx, services, filters, compiled, count, token, session)
    return page, await _includes(ctx, services, compiled.includes, page.docs, session)


# -- a `_has` read in the order of its ids (bench/README.md, "`_has` at scale") -----------------------------


@dataclass(frozen=True)
class _StreamedHas:
    join: HasJoin
    outer: CompiledSearch  # the search without the join
    after: str | None  # the id the page starts after (its token)


@dataclass(frozen=True)
class _HasIds:
    """What reading a streamed ``_has``'s ids needs: the join, its resolved inner filter, where the page starts."""

    join: HasJoin
    inner: dict[str, Any]
    after: str | None


def _streamed_has(ctx: RequestContext, services: Services, parsed: ParsedSearch, compiled: CompiledSearch,
                  types: list[str], compartment: tuple[str, str] | None, count: int,
                  token: str | None) -> _StreamedHas | None:
    """A search whose one ``_has`` is better read in id order than collected whole (``search/semijoin.py``):
    one type in the default order (``_id``), a page and at most a budgeted total (both stop early), paged
    forwards, and an index that gives the join's inner matches in the order of their references. The answer is
    the same either way; this only decides how it is read."""
    if (len(types) != 1 or compartment is not None or len(compiled.has) != 1 or compiled.chains
            or compiled.sort != [("_id", 1)] or count == 0 or parsed.summary == "count"
            or parsed.total not in (None, "none")):
        return None
    join = compiled.has[0]
    if join.target_type != types[0] or join.token_code is None or not services.search_parameters.serves_has_stream(
            join.source_type, join.token_code, join.source_code):
        return None
    after = None
    if token:
        values, meta = decode_page_token(token, compiled.sort, owner=ctx.caller)
        if meta.get("d") == "prev":
            return None
        after = str(values[0])
    return _StreamedHas(join, replace(compiled, has=()), after)


async def _streamed_ids(ctx: RequestContext, services: Services, streamed: _StreamedHas,
                        session: Session) -> _HasIds:
    inner = await resolve_filter(ctx, services, streamed.join.inner, session)
    return _HasIds(streamed.join, inner, streamed.after)


async def _ids_in_order(ctx: RequestContext, services: Services, has: _HasIds, after: str | None, batch: int,
                        session: Session) -> AsyncGenerator[list[str], None]:
    """The distinct ids of ``has.join``'s target type that its inner matches refer to, above ``after``,
    ascending, in runs as they become final."""
    join, code = has.join, has.join.source_code
    low, high = semijoin.bounds(join.target_type, after)
    ids = semijoin.AscendingIds(join, low, high)
    batch = min(batch, _HAS_BATCH)

    async def read(condition: dict[str, Any], limit: int) -> list[semijoin.Item]:
        pipeline = semijoin.items_pipeline(code, restrict(has.inner, condition), limit)
        rows = await services.store.aggregate(ctx, join.source_type, pipeline, session=session)
        return list(rows[0]["items"]) if rows else []

    ids.hold(await read(semijoin.straddling_filter(code, low), 0))
    position, condition = low, semijoin.stream_filter(code, low, high)
    while True:
        items = await read(condition, batch)
        if len(items) == batch and semijoin.smallest(items[-1]) == position:
            # a whole batch of resources at one smallest reference: all of them, then past it
            items += await read(semijoin.at_filter(code, position), 0)
            condition = semijoin.stream_filter(code, position, high)
        elif len(items) == batch:
            position = semijoin.smallest(items[-1])
            condition = semijoin.resume_filter(code, position, high)
        for item in items:
            released = ids.add(item)
            if released:
                yield released
        if len(items) < batch:
            break
    yield ids.rest()


async def _take(ids: AsyncGenerator[list[str], None], wanted: int,
                take: Callable[[list[str], int], Awaitable[int]]) -> None:
    """Hand ``take`` the ids in runs of at least what is still wanted, until it has taken ``wanted`` (``take``
    returns how many of a run it took: the outer criteria and the access filter may refuse some)."""
    run: list[str] = []
    async with aclosing(ids):
        async for released in ids:
            run += released
            if len(run) >= wanted:
                wanted -= await take(run, wanted)
                run = []
                if wanted <= 0:
                    return
        if run:
            await take(run, wanted)


async def _streamed_page_and_includes(ctx: RequestContext, services: Services, has: _HasIds, query: dict[str, Any],
                                      compiled: CompiledSearch, count: int, token: str | None,
                                      session: Session) -> tuple[Page, list[dict[str, Any]]]:
    """The page of a streamed ``_has``: its first ``count`` + 1 ids that meet the rest of the search."""
    docs: list[dict[str, Any]] = []

    async def take(ids: list[str], wanted: int) -> int:
        found = await services.store.find(ctx, has.join.target_type, restrict(query, {"_id": {"$in": ids}}),
                                          sort=compiled.sort, limit=wanted, projection=_projection(compiled),
                                          session=session)
        docs.extend(found)
        return len(found)

    await _take(_ids_in_order(ctx, services, has, has.after, count + 1, session), count + 1, take)
    more = len(docs) > count
    docs = docs[:count]
    page = Page(docs, _boundary(docs[-1], compiled.sort) if docs and more else None,
                _boundary(docs[0], compiled.sort) if docs and token else None)
    return page, await _includes(ctx, services, compiled.includes, page.docs, session)


def _streamed_counting(ctx: RequestContext, services: Services, parsed: ParsedSearch, has: _HasIds,
                       query: dict[str, Any], session: Session) -> Awaitable[int | None] | None:
    """The budgeted total of a streamed ``_has`` (``_total=none``: none): its first budget + 1 ids that meet
    the rest of the search are counted, from the first id (the total is the search's, not the page's)."""
    budget = services.settings.total_budget
    if parsed.total is not None or budget <= 0:
        return None

    async def total() -> int | None:
        counted = 0

        async def take(ids: list[str], wanted: int) -> int:
            nonlocal counted
            found = await services.store.count(ctx, has.join.target_type, restrict(query, {"_id": {"$in": ids}}),
                                               limit=wanted, session=session)
            counted += found
            return found

        await _take(_ids_in_order(ctx, services, has, None, budget + 1, session), budget + 1, take)
        return counted if counted <= budget else None

    return total()


def _counting(ctx: RequestContext, services: Services, parsed: ParsedSearch, filters: dict[str, Any],
              count: int, session: Session) -> Awaitable[int | None] | None:
    """The count a searchset Bundle carries as ``total``, or None when it carries none."""
    if parsed.total in ("accurate", "estimate") or (count == 0 and parsed.total is None):
        return _total(ctx, services, filters, session)
    if parsed.total is None and services.settings.total_budget > 0:
        return _total_within(services.settings.total_budget, ctx, services, filters, session)
    return None


async def _total(ctx: RequestContext, services: Services, filters: dict[str, Any], session: Session,
                 *, limit: int = 0) -> int:
    """Count every match (``_total=accurate|estimate``, ``_summary=count``; the estimate is exact), or at most
    ``limit`` of each type."""
    counts = await gather(session, [services.store.count(ctx, t, query, session=session, limit=limit)
                                     for t, query in filters.items()])
    return sum(counts)


async def _total_within(budget: int, ctx: RequestContext, services: Services, filters: dict[str, Any],
                        session: Session) -> int | None:
    """The number of matches if it is at most ``budget``, else None. Each type is counted up to budget + 1:
    when the sum stays within the budget, every count was exact."""
    total = await _total(ctx, services, filters, session, limit=budget + 1)
    return total if total <= budget else None


def _projection(compiled: CompiledSearch) -> dict[str, int]:
    fields = {"resource": 1}
    for field, _ in compiled.sort:
        fields[field] = 1
    for plan in compiled.includes:
        if not plan.reverse:
            for code in plan.codes:
                fields[f"sp.{code}"] = 1
    return fields


def _type_of(doc: dict[str, Any]) -> str:
    return str(doc["resource"]["resourceType"])


async def _page(ctx: RequestContext, services: Services, filters: dict[str, Any], compiled: CompiledSearch,
                count: int, token: str | None, session: Session) -> Page:
    """One page in keyset order. Rows are ordered by the sort fields (``_id`` last), then, when several types
    are searched, by type name: the token keeps the last row's sort values *and* type, so rows of two types
    with the same id are neither skipped nor repeated (ids are unique per type only)."""
    sort = list(compiled.sort)
    backwards = False
    values: list[Any] | None = None
    last_type = ""
    if token:
        values, meta = decode_page_token(token, sort, owner=ctx.caller)
        backwards = meta.get("d") == "prev"
        last_type = str(meta.get("t", ""))
    order = [(f, -d) for f, d in sort] if backwards else sort
    docs: list[dict[str, Any]] = []
    for t, query in filters.items():
        boundary: dict[str, Any] = {}
        if values is not None:
            boundary = after_filter(order, values)
            if len(filters) > 1 and (t < last_type if backwards else t > last_type):
                boundary = {"$or": [boundary, at_filter(order, values)]}
        docs += await services.store.find(ctx, t, restrict(query, boundary), sort=order, limit=count + 1,
                                          projection=_projection(compiled), session=session)
    if len(filters) > 1:  # system search: merge the per-type pages in (sort values, type) order
        docs.sort(key=lambda d: (_sort_key(sort_values(d, order), order),
                                 _Reversible(_type_of(d), backwards)))
    more = len(docs) > count
    docs = docs[:count]
    if backwards:
        docs.reverse()
        return Page(docs, _boundary(docs[-1], sort) if docs else None,
                    _boundary(docs[0], sort) if docs and more else None)
    return Page(docs, _boundary(docs[-1], sort) if docs and more else None,
                _boundary(docs[0], sort) if docs and token else None)


def _boundary(doc: dict[str, Any], sort: list[tuple[str, int]]) -> tuple[list[Any], str]:
    return sort_values(doc, sort), _type_of(doc)


def _sort_key(values: list[Any], order: list[tuple[str, int]]) -> tuple[Any, ...]:
    """Python sort key equal to MongoDB's order of ``values`` under ``order`` (missing first ascending)."""
    key: list[Any] = []
    for value, (_, direction) in zip(values, order, strict=True):
        present = value is not None
        comparable = value.to_decimal() if hasattr(value, "to_decimal") else value
        if direction >= 0:
            key.append((present, _Reversible(comparable, False) if present else None))
        else:
            key.append((not present, _Reversible(comparable, True) if present else None))
    return tuple(key)


class _Reversible:
    __slots__ = ("reverse", "value")

    def __init__(self, value: Any, reverse: bool) -> None:
        self.value = value
        self.reverse = reverse

    def __lt__(self, other: _Reversible) -> bool:
        return bool(other.value < self.value) if self.reverse else bool(self.value < other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversible) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


async def _includes(ctx: RequestContext, services: Services, plans: tuple[IncludePlan, ...],
                    matches: list[dict[str, Any]], session: Session) -> list[dict[str, Any]]:
    """``_include``/``_revinclude`` (search.html#include): round 0 applies every plan to the matches, each
    further round applies the ``:iterate`` plans to what the previous round added (at most
    ``_MAX_INCLUDE_ROUNDS`` rounds). A resource comes once, as a match or as an include."""
    if not plans or not matches:
        return []
    plans = _expand_wildcards(services, plans)
    seen = {f"{d['resource']['resourceType']}/{d['_id']}" for d in matches}
    included: list[dict[str, Any]] = []
    frontier = matches
    for round_number in range(_MAX_INCLUDE_ROUNDS):
        active = [p for p in plans if round_number == 0 or p.iterate]
        found = await _include_round(ctx, services, active, frontier, seen, session)
        if not found:
            break
        included += found
        frontier = found
    return included


async def _include_round(ctx: RequestContext, services: Services, plans: list[IncludePlan],
                         frontier: list[dict[str, Any]], seen: set[str], session: Session) -> list[dict[str, Any]]:
    wanted: dict[str, set[str]] = {}
    found: list[dict[str, Any]] = []
    for plan in (p for p in plans if not p.reverse):
        for doc in frontier:
            if doc["resource"]["resourceType"] != plan.source_type:
                continue
            for kind, ident in plan.targets(doc):
                if kind in SUPPORTED_TYPES and f"{kind}/{ident}" not in seen:
                    wanted.setdefault(kind, set()).add(ident)
    projection = {"resource": 1}
    for plan in plans:
        if plan.iterate and not plan.reverse:
            projection.update({f"sp.{code}": 1 for code in plan.codes})
    for kind, ids in wanted.items():
        for doc in await services.store.find(ctx, kind, {"_id": {"$in": sorted(ids)}}, projection=projection,
                                             session=session):
            _add(doc, seen, found)
    refs = [f"{d['resource']['resourceType']}/{d['_id']}" for d in frontier]
    for plan in (p for p in plans if p.reverse):
        if plan.source_type not in SERVED_TYPES:  # AuditEvent too: the store shows it to admins only
            continue
        for doc in await services.store.find(ctx, plan.source_type, plan.reverse_filter(refs),
                                             projection=projection, session=session):
            _add(doc, seen, found)
    return found


def _expand_wildcards(services: Services, plans: tuple[IncludePlan, ...]) -> tuple[IncludePlan, ...]:
    """``_revinclude=*``: one plan per supported type, over its reference parameters."""
    out: list[IncludePlan] = []
    for plan in plans:
        if plan.source_type != "*":
            out.append(plan)
            continue
        for kind in SUPPORTED_TYPES:
            params = services.search_parameters.for_type(kind)
            codes = tuple(sorted(c for c, p in params.items() if p.type == "reference" and p.indexed))
            if codes:
                out.append(IncludePlan(kind, codes, plan.target_type, plan.iterate, plan.reverse))
    return tuple(out)


def _add(doc: dict[str, Any], seen: set[str], found: list[dict[str, Any]]) -> None:
    key = f"{doc['resource']['resourceType']}/{doc['_id']}"
    if key not in seen:
        seen.add(key)
        found.append(doc)


# -- Bundle assembly ---------------------------------------------------------------------------------------


def _entry(ctx: RequestContext, doc: dict[str, Any], mode: str, parsed: ParsedSearch) -> dict[str, Any]:
    resource = doc["resource"]
    if mode == "match":
        resource = select_elements(summarize(resource, parsed.summary), parsed.elements)
    return {"fullUrl": ctx.url(resource["resourceType"], doc["_id"]), "resource": resource,
            "search": {"mode": mode}}


def _ignored_outcome(parsed: ParsedSearch) -> dict[str, Any]:
    issues = [Issue("warning", "not-supported", f"Parameter '{name}' was ignored: {reason}", (name,))
              for name, reason in parsed.ignored]
    return {"resource": operation_outcome(issues), "search": {"mode": "outcome"}}


def _url(ctx: RequestContext, resource_type: str | None, compartment: tuple[str, str] | None,
         parsed: ParsedSearch, page: str | None) -> str:
    parts = [*compartment, resource_type or "*"] if compartment else [resource_type or ""]
    base = ctx.url(*[p for p in parts if p]) if any(parts) else ctx.base_url
    query = parsed.applied_query()
    if page:
        query = f"{query}&{urlencode({PAGE: page})}" if query else urlencode({PAGE: page})
    return f"{base}?{query}" if query else base


def _links(ctx: RequestContext, resource_type: str | None, compartment: tuple[str, str] | None,
           parsed: ParsedSearch, compiled: CompiledSearch, page: Page, token: str | None) -> list[dict[str, str]]:
    links = [{"relation": "self", "url": _url(ctx, resource_type, compartment, parsed, token)}]
    if token:
        links.append({"relation": "first", "url": _url(ctx, resource_type, compartment, parsed, None)})
    if page.prev_key is not None:
        values, kind = page.prev_key
        prev = encode_page_token(values, compiled.sort, meta={"d": "prev", "t": kind}, owner=ctx.caller)
        links.append({"relation": "previous", "url": _url(ctx, resource_type, compartment, parsed, prev)})
    if page.next_key is not None:
        values, kind = page.next_key
        nxt = encode_page_token(values, compiled.sort, meta={"t": kind}, owner=ctx.caller)
        links.append({"relation": "next", "url": _url(ctx, resource_type, compartment, parsed, nxt)})
    return links
