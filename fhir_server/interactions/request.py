"""One FHIR request, however it arrived: an HTTP request or an entry of a batch or transaction Bundle.

``parse_request`` is the one parser of the RESTful API's URLs (https://hl7.org/fhir/R4/http.html#general): the
HTTP routes and ``Bundle.entry.request`` (https://hl7.org/fhir/R4/bundle.html#transaction) both go through it,
so a URL means the same, and fails the same way, in both (unknown type 404, a method the URL does not take
405, PUT or DELETE on a type without criteria 405, a path of no interaction 404). What it returns, a
``FhirRequest``, names the interaction (read, vread, update, patch, delete, history, create, search,
capabilities, batch/transaction, operations) with everything the interaction needs: the parts of the URL,
the query, the FHIR headers (If-Match, If-None-Match, If-None-Exist, If-Modified-Since, ``Prefer: return``)
and the body read as that interaction reads it.

The body comes from a ``RequestBody``: over HTTP the request's stream, read only once the URL is known to be
valid (so a 404 or 405 costs no body; media type 415 and size 413 are the HTTP side's checks); in a Bundle the
entry's resource (a PATCH entry's Binary holds its JSON Patch). The checks of the resource itself (structure,
type and id matching the URL) belong to the write interactions (``create``, ``update``), not to parsing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl

from fhir_server.errors import InvalidRequest, MethodNotAllowed, NotFound
from fhir_server.interactions.binary import BINARY
from fhir_server.interactions.dates import parse_http_date
from fhir_server.interactions.patch import parse_patch
from fhir_server.interactions.result import RETURN_PREFERENCES, ReturnPreference
from fhir_server.resources import AUDIT_EVENT, require_supported_type
from fhir_server.search.registry import COMPARTMENT_TYPES


class Interaction(Enum):
    """What a request asks for: the CapabilityStatement's interaction codes, plus capabilities, compartment
    search and operations (https://hl7.org/fhir/R4/http.html#summary)."""

    READ = "read"
    VREAD = "vread"
    UPDATE = "update"  # with an id, or conditional (criteria, no id)
    PATCH = "patch"
    DELETE = "delete"  # with an id, or conditional
    HISTORY_INSTANCE = "history-instance"
    HISTORY_TYPE = "history-type"
    HISTORY_SYSTEM = "history-system"
    CREATE = "create"  # conditional with If-None-Exist
    SEARCH_TYPE = "search-type"
    SEARCH_SYSTEM = "search-system"
    SEARCH_COMPARTMENT = "search-compartment"
    CAPABILITIES = "capabilities"
    BATCH = "batch"
    TRANSACTION = "transaction"
    OPERATION_SYSTEM = "operation-system"
    OPERATION_TYPE = "operation-type"
    OPERATION_INSTANCE = "operation-instance"


WRITES = frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.PATCH, Interaction.DELETE})
# http.html#custom: the writes that may carry a Provenance in this header (``interactions.provenance_header``)
PROVENANCE_HEADER = "x-provenance"
TRACED_WRITES = frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.PATCH})
OPERATIONS = frozenset({Interaction.OPERATION_SYSTEM, Interaction.OPERATION_TYPE, Interaction.OPERATION_INSTANCE})
BUNDLES = frozenset({Interaction.BATCH, Interaction.TRANSACTION})
# What a HEAD may ask (RFC 9110 9.3.2: the GET without its body): the reads that change nothing, not an operation
# (a GET $export starts a job)
HEAD_READS = frozenset({Interaction.READ, Interaction.VREAD, Interaction.SEARCH_TYPE, Interaction.SEARCH_SYSTEM,
                        Interaction.SEARCH_COMPARTMENT, Interaction.HISTORY_INSTANCE, Interaction.HISTORY_TYPE,
                        Interaction.HISTORY_SYSTEM, Interaction.CAPABILITIES})
# What may be asked of AuditEvents (the server writes them; README, "Audit trail"): anything else is 405
_AUDIT_EVENT_INTERACTIONS = frozenset({Interaction.READ, Interaction.SEARCH_TYPE, Interaction.OPERATION_TYPE,
                                       Interaction.OPERATION_INSTANCE})
EVERY_TYPE = "*"  # the type of a compartment search of all its types: [base]/Patient/[id]/*
OPERATION_LEVELS = {Interaction.OPERATION_SYSTEM: "system", Interaction.OPERATION_TYPE: "type",
                    Interaction.OPERATION_INSTANCE: "instance"}


class RequestBody(Protocol):
    """Where a request's body comes from; each method reads it the way one kind of interaction needs it."""

    async def resource(self) -> Any:
        """A FHIR resource (JSON): create, update, batch/transaction."""

    async def binary(self, resource_id: str | None) -> Any:
        """The body of a Binary's create or update: a Binary resource, or content the Binary holds as is
        (``interactions.binary``); ``resource_id`` the id of an update's URL."""

    async def patch_document(self) -> Any:
        """A patch: a JSON Patch document (a JSON array) or a FHIRPath Patch (a Parameters resource)."""

    async def form(self) -> list[tuple[str, str]]:
        """Search parameters of ``POST _search`` (application/x-www-form-urlencoded)."""

    async def optional_resource(self) -> Any:
        """An operation's input (a Parameters or other resource), or None when there is no body."""


@dataclass(frozen=True, slots=True)
class FhirRequest:
    method: str
    interaction: Interaction
    resource_type: str | None = None  # the type of the URL; for a compartment search, the type searched
    resource_id: str | None = None
    version_id: str | None = None
    compartment: tuple[str, str] | None = None  # ("Patient", id) of [base]/Patient/[id]/[type]
    operation: str | None = None  # without the $
    query: str = ""  # the query string as sent: the criteria of a conditional update or delete
    params: list[tuple[str, str]] = field(default_factory=list)  # query (and _search form) parameters
    body: Any = None  # the resource; for a patch the parsed patch (``interactions.patch.Patch``)
    if_match: str | None = None
    if_none_match: str | None = None
    if_none_exist: str | None = None
    if_modified_since: datetime | None = None
    prefer_return: ReturnPreference | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # every header (operations read Accept, Prefer)

    @property
    def is_write(self) -> bool:
        return self.interaction in WRITES

    @property
    def pretty(self) -> bool:
        return ("_pretty", "true") in self.params


class _Target(NamedTuple):
    """What the URL names, before headers and body."""

    interaction: Interaction
    resource_type: str | None = None
    resource_id: str | None = None
    tail: str | None = None  # the version, the operation name or the compartment's searched type
    version: str | None = None  # of an operation on a version: [type]/[id]/_history/[vid]/$name


async def parse_request(method: str, path: str, query: str, headers: Mapping[str, str], body: RequestBody | None,
                        *, routed: Callable[[Interaction, str | None], object] | None = None) -> FhirRequest:
    """The request ``method path?query`` (``path`` relative to the base, no leading or trailing slash).

    ``body`` is None when the request has none (a GET over HTTP); an interaction that needs one then fails as
    for an empty body. ``routed`` is called with the interaction and the URL's type once the URL's shape and method
    are known to name an interaction, before the type is checked and the body read: where an HTTP server
    negotiates the response's media type (406)."""
    target = _target("GET" if method == "HEAD" else method, path)
    if method == "HEAD" and target.interaction not in HEAD_READS:
        allowed = _OPERATION_METHODS.get(target.interaction, ("GET",))
        raise MethodNotAllowed(f"HEAD is not allowed on {path or 'the base'}: only a read has a HEAD",
                               headers=_allow(allowed))
    if routed is not None:
        routed(target.interaction, target.resource_type)
    _check_target(target, method, path, query)
    kind = target.interaction
    params = parse_qsl(query, keep_blank_values=True) if query else []
    content = await _content(kind, method, params, body, target)
    version_id = target.tail if kind is Interaction.VREAD else target.version
    operation = target.tail[1:] if kind in OPERATIONS and target.tail else None
    resource_type, compartment = target.resource_type, None
    if kind is Interaction.SEARCH_COMPARTMENT:
        searched = None if target.tail == EVERY_TYPE else target.tail
        resource_type, compartment = searched, (target.resource_type or "", target.resource_id or "")
    if kind in BUNDLES:
        kind = _bundle_kind(content)
    since = headers.get("if-modified-since")
    return FhirRequest(
        method, kind, resource_type, target.resource_id, version_id=version_id, compartment=compartment,
        operation=operation, query=query, params=params, body=content, if_match=headers.get("if-match"),
        if_none_match=headers.get("if-none-match"), if_none_exist=_if_none_exist(headers, resource_type),
        if_modified_since=_modified_since(since) if since else None, prefer_return=_return_preference(headers),
        headers=headers)


# http.html#ccreate: If-None-Exist (and a Bundle entry's ifNoneExist) holds "just the query portion of the URL";
# clients also send the search URL whole, ``Patient?identifier=...`` or ``[base]/Patient?identifier=...``.
_SEARCH_URL = re.compile(r"^(?:https?://[^?]*/)?([A-Z][A-Za-z]+)\?(.*)$", re.DOTALL)


def _if_none_exist(headers: Mapping[str, str], resource_type: str | None) -> str | None:
    """The criteria of ``If-None-Exist``: the query, also when sent as the search URL of the type created (of
    another type: a 400, as those criteria cannot name the resource)."""
    criteria = headers.get("if-none-exist")
    whole = _SEARCH_URL.match(criteria) if criteria else None
    if whole is None:
        return criteria
    if whole.group(1) != resource_type:
        raise InvalidRequest(f"If-None-Exist '{criteria}' searches {whole.group(1)}, not the {resource_type} "
                             "created: send the query of a search of it", code="invalid")
    return whole.group(2)


# -- the URL -----------------------------------------------------------------------------------------------

_SYSTEM = {"": {"GET": Interaction.SEARCH_SYSTEM, "POST": Interaction.BATCH},
           "metadata": {"GET": Interaction.CAPABILITIES},
           "_history": {"GET": Interaction.HISTORY_SYSTEM},
           "_search": {"POST": Interaction.SEARCH_SYSTEM}}
_TYPE = {"GET": Interaction.SEARCH_TYPE, "POST": Interaction.CREATE, "PUT": Interaction.UPDATE,
         "PATCH": Interaction.PATCH, "DELETE": Interaction.DELETE}
_TYPE_PATHS = {"_search": {"POST": Interaction.SEARCH_TYPE}, "_history": {"GET": Interaction.HISTORY_TYPE}}
_INSTANCE = {"GET": Interaction.READ, "PUT": Interaction.UPDATE, "PATCH": Interaction.PATCH,
             "DELETE": Interaction.DELETE}
_OPERATION_METHODS = {Interaction.OPERATION_SYSTEM: ("GET", "POST", "DELETE"),
                      Interaction.OPERATION_TYPE: ("GET", "POST"), Interaction.OPERATION_INSTANCE: ("GET", "POST")}


def _target(method: str, path: str) -> _Target:
    """Which interaction the URL names: a path of none is 404, a method the URL does not take 405."""
    parts = path.split("/") if path else []
    if len(parts) == 5 and parts[2] == "_history" and parts[4].startswith("$") and "" not in parts:
        target = _operation(method, Interaction.OPERATION_INSTANCE, path, parts[0], parts[1], parts[4])
        return target._replace(version=parts[3])
    if len(parts) > 4 or "" in parts or (len(parts) == 4 and parts[2] != "_history"):
        raise NotFound(f"No such endpoint: {method} {path}")
    if len(parts) <= 1 and (not parts or parts[0] in _SYSTEM or parts[0].startswith("$")):
        return _system_target(method, parts[0] if parts else "")
    resource_type, rest = parts[0], parts[1:]
    if not rest:
        return _Target(_allowed(method, _TYPE, path), resource_type)
    if len(rest) > 1 and rest[0] in _TYPE_PATHS:  # Patient/_history/1: _history is no id (ids have no "_")
        raise NotFound(f"No such endpoint: {method} {path}")
    if len(rest) > 1:
        return _instance_target(method, path, resource_type, rest[0], rest[1:])
    if rest[0] in _TYPE_PATHS:
        return _Target(_allowed(method, _TYPE_PATHS[rest[0]], path), resource_type)
    if rest[0].startswith("$"):
        return _operation(method, Interaction.OPERATION_TYPE, path, resource_type, None, rest[0])
    return _Target(_allowed(method, _INSTANCE, path), resource_type, rest[0])


def _check_target(target: _Target, method: str, path: str, query: str) -> None:
    """An unknown type is 404 (https://hl7.org/fhir/R4/http.html#general: "not supported"), as is a compartment
    R4 does not define; PUT or DELETE on a type needs criteria (405)."""
    if target.resource_type is None:
        return
    require_supported_type(target.resource_type)
    if target.resource_type == AUDIT_EVENT and target.interaction not in _AUDIT_EVENT_INTERACTIONS:
        raise MethodNotAllowed(f"{method} {path}: AuditEvents are recorded by the server and only read and searched "
                               "(no create, update, patch, delete or history)")
    if target.interaction is Interaction.SEARCH_COMPARTMENT:
        _check_compartment(target.resource_type, target.tail or "")
    if target.interaction in (Interaction.UPDATE, Interaction.PATCH, Interaction.DELETE) and "/" not in path \
            and not query:
        kind = {"PUT": "conditional update", "PATCH": "conditional patch"}.get(method, "conditional delete")
        raise MethodNotAllowed(f"{method} on a type needs search criteria ({kind}) or an id")


def _system_target(method: str, name: str) -> _Target:
    if name.startswith("$"):
        return _operation(method, Interaction.OPERATION_SYSTEM, name, None, None, name)
    return _Target(_allowed(method, _SYSTEM[name], name))


def _instance_target(method: str, path: str, resource_type: str, resource_id: str, rest: list[str]) -> _Target:
    """``[type]/[id]/...``: history, vread, an instance operation or a compartment search."""
    if rest[0] == "_history":
        kind = Interaction.HISTORY_INSTANCE if len(rest) == 1 else Interaction.VREAD
        return _Target(_allowed(method, {"GET": kind}, path), resource_type, resource_id,
                       rest[1] if len(rest) > 1 else None)
    if rest[0].startswith("$"):
        return _operation(method, Interaction.OPERATION_INSTANCE, path, resource_type, resource_id, rest[0])
    return _Target(_allowed(method, {"GET": Interaction.SEARCH_COMPARTMENT}, path), resource_type, resource_id,
                   rest[0])


def _operation(method: str, kind: Interaction, path: str, resource_type: str | None, resource_id: str | None,
               name: str) -> _Target:
    if method not in _OPERATION_METHODS[kind]:
        raise MethodNotAllowed(f"{method} is not allowed on {path}", headers=_allow(_OPERATION_METHODS[kind]))
    return _Target(kind, resource_type, resource_id, name)


def _allowed(method: str, interactions: Mapping[str, Interaction], path: str) -> Interaction:
    kind = interactions.get(method)
    if kind is None:
        head = ("HEAD",) if interactions.get("GET") in HEAD_READS else ()
        raise MethodNotAllowed(f"{method} is not allowed on {path or 'the base'}",
                               headers=_allow((*interactions, *head)))
    return kind


def _allow(methods: Iterable[str]) -> dict[str, str]:
    """The ``Allow`` header of a 405: the methods the URL takes (RFC 9110 15.5.6: a 405 MUST name them)."""
    return {"Allow": ", ".join(sorted(set(methods)))}


def _check_compartment(compartment_type: str, searched_type: str) -> None:
    """The compartments R4 defines are served (https://hl7.org/fhir/R4/compartmentdefinition.html: Patient,
    Encounter, Practitioner, RelatedPerson, Device); a type outside the compartment finds nothing. The audit
    trail is searched by ``AuditEvent?patient=``, not as a patient's data. ``*`` searches every type of the
    compartment (http.html#search: ``GET [base]/Patient/[id]/*``)."""
    if compartment_type not in COMPARTMENT_TYPES:
        raise NotFound(f"{compartment_type} is not a compartment this server supports", code="not-supported")
    if searched_type == EVERY_TYPE:
        return
    require_supported_type(searched_type)
    if searched_type == AUDIT_EVENT:
        raise NotFound("AuditEvent is not searched in a Patient compartment: use AuditEvent?patient=",
                       code="not-supported")


# -- the body ----------------------------------------------------------------------------------------------


async def _content(kind: Interaction, method: str, params: list[tuple[str, str]], body: RequestBody | None,
                   target: _Target) -> Any:
    """The body as ``kind`` reads it; a POST search's form parameters are appended to ``params``."""
    if kind in (Interaction.CREATE, Interaction.UPDATE) or kind in BUNDLES:
        if body is None:
            resource = None
        elif target.resource_type == BINARY:
            resource = await body.binary(target.resource_id)
        else:
            resource = await body.resource()
        if resource is None:
            raise InvalidRequest(f"{method} needs a resource", code="required")
        return resource
    if kind is Interaction.PATCH:
        return parse_patch(await body.patch_document() if body is not None else None)
    if method == "POST" and kind in (Interaction.SEARCH_TYPE, Interaction.SEARCH_SYSTEM):
        params += await body.form() if body is not None else []
        return None
    if method == "POST" and kind in OPERATIONS and body is not None:
        return await body.optional_resource()
    return None


def _bundle_kind(body: Any) -> Interaction:
    """POST to the base takes a batch or a transaction (https://hl7.org/fhir/R4/http.html#transaction)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base takes a Bundle of type transaction or batch", code="invalid")
    kind = body.get("type")
    if kind == "transaction":
        return Interaction.TRANSACTION
    if kind == "batch":
        return Interaction.BATCH
    raise InvalidRequest(f"Bundle.type must be transaction or batch, not '{kind}'", code="value",
                         expression=("Bundle.type",))


# -- headers -----------------------------------------------------------------------------------------------


def parse_prefer(values: Iterable[str]) -> dict[str, str]:
    """``Prefer: return=minimal, handling=strict`` -> {"return": "minimal", "handling": "strict"}
    (https://hl7.org/fhir/R4/http.html#ops, RFC 7240); several Prefer headers count as one list."""
    out: dict[str, str] = {}
    for header in values:
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"')
    return out


def _return_preference(headers: Mapping[str, str]) -> ReturnPreference | None:
    """``Prefer: return=``; an unknown value counts as none."""
    getlist = getattr(headers, "getlist", None)  # an HTTP request may repeat the header
    values = getlist("prefer") if getlist is not None else [headers.get("prefer") or ""]
    wanted = parse_prefer(values).get("return")
    return next((p for p in RETURN_PREFERENCES if p == wanted), None)


def _modified_since(value: str) -> datetime | None:
    """If-Modified-Since: an HTTP date, or the FHIR instant of ``Bundle.entry.request.ifModifiedSince``;
    unreadable, it is ignored (RFC 9110 13.1.3)."""
    parsed = parse_http_date(value)
    if parsed is not None:
        return parsed
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant.astimezone(UTC) if instant.tzinfo else None
