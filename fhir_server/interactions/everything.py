"""``GET [base]/Patient/[id]/$everything`` (https://hl7.org/fhir/R4/patient-operation-everything.html).

The result is the patient, every resource in its compartment (https://hl7.org/fhir/R4/compartmentdefinition-
patient.html, the same parameters as compartment search), and the resources those refer to that are not in the
compartment themselves (e.g. the managing Organization), each once, as a ``searchset`` Bundle: the patient and
its compartment with ``search.mode = match``, the referenced resources with ``include``. References are not
followed to other Patients, nor out of a Group (its members): ``$everything`` is one patient's record.

Parameters: ``_since`` (instant: only resources whose ``lastUpdated`` is at or after it), ``_type``
(comma-separated types to return; references are still followed from every compartment resource, so
``_type=Organization`` gives the patient's organizations), ``_count`` (page size, default and maximum from the
settings), ``start`` and ``end`` (dates: "care dates, not record currency dates"). A compartment resource is
out of a ``start``/``end`` range when its care date (the type's ``date`` search parameter, R4's clinical date,
or ``effective`` for a MedicationStatement and ``effective-time`` for a MedicationAdministration) lies wholly
before ``start`` or after ``end``, as ``date=ge{start}&date=le{end}`` searches; a resource of a type without a
care date, or without the date, cannot be placed outside the range and stays (a Condition, an undated
Observation). The patient always stays, and the resources that in-range ones refer to.

Paging is keyset: the result is ordered by (patient, compartment resources by type and id, referenced
resources by type and id) and the ``next`` link carries the last key, so pages stay consistent while the
record changes (a resource added behind the boundary appears, nothing is repeated). Every read goes through
``ResourceStore`` and so through the access filter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fhir_server.context import RequestContext
from fhir_server.errors import Gone, InvalidRequest, Issue, NotFound, operation_outcome
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.dates import parse_instant_param
from fhir_server.interactions.search import compartment_filter, compiled_filter
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.resources import SUPPORTED_TYPES, require_supported_type
from fhir_server.search import decode_page_token, encode_page_token
from fhir_server.search.param_types import reference
from fhir_server.search.param_types.common import MATCH_NOTHING
from fhir_server.search.values import parse_date_range
from fhir_server.services import Services
from fhir_server.storage.access import restrict

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
PAGE = "_page"
KNOWN = frozenset({"_since", "_type", "_count", "start", "end", PAGE, "_format", "_pretty"})
# The care date of the types whose R4 clinical date parameter (``date``) is not it
CARE_DATES = {"MedicationStatement": "effective", "MedicationAdministration": "effective-time"}
_KEY_SPEC = [("segment", 1), ("type", 1), ("_id", 1)]
NOT_FOLLOWED = frozenset({"Group"})  # a Group's references are its other members
Key = tuple[int, str, str]  # (0 patient | 1 compartment | 2 referenced, type, id)


def register(registry: OperationRegistry) -> None:
    registry.register(OperationSpec(
        "everything", everything, frozenset({"instance"}), types=frozenset({"Patient"}),
        methods=frozenset({"GET"}), definition=DEFINITION,
        documentation="The patient, its compartment and the resources they refer to (start, end, _since, _type, "
                      "_count)"))


async def everything(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    patient_id = str(op.resource_id)
    current = await services.store.current(ctx, "Patient", patient_id)
    if current is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    if current.deleted:
        raise Gone(f"Patient/{patient_id} was deleted")
    since, types, count, ignored = _parameters(ctx, services, op)
    care = _care_period(op)
    keys = await _keys(ctx, services, patient_id, since, types, care)
    after: Key | None = None
    token = op.param(PAGE)
    if token:
        values, _meta = decode_page_token(token, _KEY_SPEC, owner=ctx.caller)
        after = (int(values[0]), str(values[1]), str(values[2]))
    remaining = [k for k in keys if after is None or k > after]
    page = remaining[:count]
    entries = [_entry(ctx, doc, "match" if key[0] < 2 else "include")
               for key, doc in zip(page, await _fetch(ctx, services, page), strict=True) if doc["resource"]]
    if ignored:
        issues = [Issue("warning", "not-supported", f"Parameter '{name}' was ignored", (name,)) for name in ignored]
        entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
    applied = _applied(op, since, types, count)
    links = [{"relation": "self", "url": _url(ctx, patient_id, applied + ([(PAGE, token)] if token else []))}]
    if len(remaining) > count:
        nxt = encode_page_token(list(page[-1]), _KEY_SPEC, owner=ctx.caller)
        links.append({"relation": "next", "url": _url(ctx, patient_id, [*applied, (PAGE, nxt)])})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(keys), "link": links}
    return OperationResponse(200, with_entries(bundle, entries))


def _parameters(ctx: RequestContext, services: Services,
                op: OperationRequest) -> tuple[datetime | None, tuple[str, ...], int, list[str]]:
    since: datetime | None = None
    raw_since = op.param("_since")
    if raw_since:
        since = parse_instant_param("_since", raw_since)  # as history's _since
    types: tuple[str, ...] = ()
    for name, value in op.params:
        if name == "_type":
            types += tuple(t.strip() for t in value.split(",") if t.strip())
    for kind in types:
        require_supported_type(kind)
    count = services.settings.default_count
    raw_count = op.param("_count")
    if raw_count is not None:
        if not raw_count.isdigit() or int(raw_count) < 1:
            raise InvalidRequest(f"_count: {raw_count!r} is not a positive integer", code="invalid")
        count = min(int(raw_count), services.settings.max_count)
    ignored = sorted({name for name, _ in op.params if name not in KNOWN})
    if ignored and ctx.handling_strict:
        raise InvalidRequest(f"$everything does not support {', '.join(ignored)}", code="not-supported")
    return since, types, count, ignored


def _care_period(op: OperationRequest) -> list[tuple[str, str]]:
    """``start`` and ``end`` as the date search prefixes they mean (``ge``, ``le``); a 400 for what is no date."""
    bounds: list[tuple[str, str]] = []
    for name, prefix in (("start", "ge"), ("end", "le")):
        value = op.param(name)
        if value is None:
            continue
        try:
            parse_date_range(value)
        except ValueError:
            raise InvalidRequest(f"{name}: {value!r} is not a date", code="invalid", expression=(name,)) from None
        bounds.append((prefix, value))
    return bounds


def _care_date(services: Services, kind: str) -> str | None:
    """The code of ``kind``'s care date parameter, when it has one the server indexes."""
    for code in ("date", CARE_DATES.get(kind)):
        param = services.search_parameters.get(kind, code) if code else None
        if param is not None and param.type == "date" and param.indexed:
            return code
    return None


async def _in_care_period(ctx: RequestContext, services: Services, kind: str,
                          care: list[tuple[str, str]]) -> dict[str, Any]:
    """The filter keeping ``kind``'s resources whose care date may lie in the period (see the module)."""
    code = _care_date(services, kind) if care else None
    if code is None:
        return {}
    dated = await compiled_filter(ctx, services, kind, [(code, prefix + value) for prefix, value in care])
    undated = await compiled_filter(ctx, services, kind, [(f"{code}:missing", "true")])
    return {"$or": [dated, undated]}


async def _keys(ctx: RequestContext, services: Services, patient_id: str, since: datetime | None,
                types: tuple[str, ...], care: list[tuple[str, str]]) -> list[Key]:
    """Every key of the result, in order (the record of one patient: small enough to list)."""
    registry = services.search_parameters
    members: dict[tuple[str, str], datetime] = {}
    references: set[tuple[str, str]] = set()
    for kind in SUPPORTED_TYPES:
        query = compartment_filter(services, ("Patient", patient_id), kind)
        if query == MATCH_NOTHING:
            continue
        if kind != "Patient":  # the patient, and the patients it links to, have no care date
            query = restrict(query, await _in_care_period(ctx, services, kind, care))
        codes = [c for c, p in registry.for_type(kind).items() if p.type == "reference" and p.indexed]
        projection = {"lastUpdated": 1, **{f"sp.{c}": 1 for c in codes}}
        for doc in await services.store.find(ctx, kind, query, projection=projection):
            members[(kind, doc["_id"])] = doc["lastUpdated"]
            if kind in NOT_FOLLOWED:
                continue
            for code in codes:
                for entry in doc.get("sp", {}).get(code, ()):
                    target = reference.target(entry)
                    if target is not None and target[0] in SUPPORTED_TYPES and target[0] != "Patient":
                        references.add(target)
    referenced = await _existing(ctx, services, references - set(members))
    keys: list[Key] = []
    for (kind, ident), updated in [*members.items(), *referenced.items()]:
        if types and kind not in types:
            continue
        if since is not None and updated < since:
            continue
        segment = 0 if (kind, ident) == ("Patient", patient_id) else 1 if (kind, ident) in members else 2
        keys.append((segment, kind, ident))
    return sorted(keys)


async def _existing(ctx: RequestContext, services: Services,
                    refs: set[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    by_type: dict[str, list[str]] = {}
    for kind, ident in refs:
        by_type.setdefault(kind, []).append(ident)
    found: dict[tuple[str, str], datetime] = {}
    for kind, ids in by_type.items():
        for doc in await services.store.find(ctx, kind, {"_id": {"$in": sorted(ids)}}, projection={"lastUpdated": 1}):
            found[(kind, doc["_id"])] = doc["lastUpdated"]
    return found


async def _fetch(ctx: RequestContext, services: Services, page: list[Key]) -> list[dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for _segment, kind, ident in page:
        by_type.setdefault(kind, []).append(ident)
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, ids in by_type.items():
        for doc in await services.store.find(ctx, kind, {"_id": {"$in": ids}}, projection={"resource": 1}):
            docs[(kind, doc["_id"])] = doc
    # a resource deleted between listing and fetching is left out of the page
    return [docs.get((kind, ident), {"_id": ident, "resource": None}) for _s, kind, ident in page]


def _entry(ctx: RequestContext, doc: dict[str, Any], mode: str) -> dict[str, Any]:
    resource = doc["resource"]
    return {"fullUrl": ctx.url(resource["resourceType"], doc["_id"]), "resource": resource,
            "search": {"mode": mode}}


def _applied(op: OperationRequest, since: datetime | None, types: tuple[str, ...],
             count: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = [(name, value) for name in ("start", "end")
                                    if (value := op.param(name)) is not None]
    raw_since = op.param("_since")
    if since is not None and raw_since:
        pairs.append(("_since", raw_since))
    if types:
        pairs.append(("_type", ",".join(types)))
    pairs.append(("_count", str(count)))
    return pairs


def _url(ctx: RequestContext, patient_id: str, pairs: list[tuple[str, str]]) -> str:
    query = urlencode(pairs, safe=":,/|")
    return ctx.url("Patient", patient_id, "$everything") + (f"?{query}" if query else "")
