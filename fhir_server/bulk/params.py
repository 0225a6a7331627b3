"""Kick-off request validation for ``$export``.

Bulk Data Access IG 2.0, export.html: "Bulk Data Kick-off Request" (headers ``Accept`` and ``Prefer``) and
"Query Parameters" (``_outputFormat``, ``_since``, ``_type``, ``_typeFilter``, ``patient``, ``_elements``,
``includeAssociatedData``).
Parameters come from the query string (GET) or from a ``Parameters`` body (POST,
export.html#bulk-data-kick-off-request). Everything here is pure: no I/O, so the checks run before any job is
created and errors are synchronous 4xx answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import InvalidRequest, NotAcceptable
from fhir_server.interactions.dates import parse_instant_param
from fhir_server.interactions.request import parse_prefer
from fhir_server.operations import OperationRequest

NDJSON = "application/fhir+ndjson"
# export.html#query-parameters: the server SHALL accept the full type and the two abbreviations.
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
# The kick-off's Accept: only application/fhir+json is defined (plus what clients commonly send for it).
ACCEPTABLE = frozenset({"application/fhir+json", "application/json", "application/json+fhir", "*/*",
                        "application/*"})
# Defined by the IG but not implemented here: refused unless ``Prefer: handling=lenient``.
UNSUPPORTED = frozenset({"organizeOutputBy", "allowPartialManifests"})
KNOWN = frozenset({"_outputFormat", "_since", "_type", "_typeFilter", "patient", "_elements",
                   "includeAssociatedData"})
# ``includeAssociatedData``: the IG's two values (a server's own would start with ``_``; this one has none)
LATEST_PROVENANCE, RELEVANT_PROVENANCE = "LatestProvenanceResources", "RelevantProvenanceResources"
ASSOCIATED_DATA = frozenset({LATEST_PROVENANCE, RELEVANT_PROVENANCE})
# ``_elements``: root elements, alone (``id``) or of one type (``Patient.id``)
_ELEMENT = re.compile(r"^(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*)$")
# ``patient``: a reference to a Patient, relative or absolute (``valueReference`` in a POST, text in a GET).
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class ExportParams:
    """The validated parameters of one kick-off request."""

    types: tuple[str, ...] | None  # ``_type`` as given (None: every type of the level)
    since: datetime | None
    type_filters: dict[str, tuple[str, ...]]  # type -> ``_typeFilter`` queries (OR-ed)
    patients: tuple[str, ...] | None = None  # ``patient``: the ids of the Patients to export (None: all)
    elements: tuple[str, ...] = ()  # ``_elements`` as given: ``id`` or ``Patient.id``
    associated: tuple[str, ...] = ()  # ``includeAssociatedData``: values of :data:`ASSOCIATED_DATA`
    output_format: str = NDJSON
    lenient: bool = False
    ignored: tuple[str, ...] = field(default_factory=tuple)  # what ``handling=lenient`` let through


def check_kickoff_headers(headers: dict[str, str]) -> bool:
    """Enforce ``Prefer: respond-async`` (400 without it) and a JSON ``Accept`` (406 otherwise; absent is
    taken as application/fhir+json, which the IG allows). Returns True for ``handling=lenient``."""
    prefer = parse_prefer([headers.get("prefer", "")])
    if "respond-async" not in prefer:
        raise InvalidRequest("$export runs asynchronously: send the header 'Prefer: respond-async' "
                             "(Bulk Data IG, export.html#headers)", code="invalid")
    accept = headers.get("accept")
    if accept:
        offered = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if not offered & ACCEPTABLE:
            raise NotAcceptable(f"$export answers with application/fhir+json, not {accept}")
    return prefer.get("handling", "").lower() == "lenient"


def collect_params(op: OperationRequest) -> list[tuple[str, str]]:
    """Every parameter, repeated ones included, from the query string and from a Parameters body."""
    pairs = list(op.params)
    body: Any = op.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for parameter in op.parameters():
            name = parameter.get("name")
            for key, value in parameter.items():
                if key.startswith("value") and isinstance(name, str):
                    pairs.append((name, _text(value)))
    elif body is not None:
        raise InvalidRequest("A POST $export takes a Parameters resource", code="structure")
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, dict):  # valueReference (the ``patient`` parameter)
        return str(value.get("reference", ""))
    return str(value)


def parse_export_params(pairs: list[tuple[str, str]], *, lenient: bool) -> ExportParams:
    """Validate the export parameters; unknown IG parameters are 400 unless ``lenient``."""
    ignored: list[str] = []
    output_format = NDJSON
    since: datetime | None = None
    types: list[str] | None = None
    filters: dict[str, list[str]] = {}
    patients: list[str] | None = None
    elements: list[str] = []
    associated: list[str] = []
    for name, value in pairs:
        if name == "_outputFormat":
            output_format = parse_output_format(value)
        elif name == "_since":
            since = parse_instant_param("_since", value)
        elif name == "_type":
            types = (types or []) + [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_typeFilter":
            resource_type, query = split_type_filter(value)
            filters.setdefault(resource_type, []).append(query)
        elif name == "patient":
            patients = (patients or []) + [patient_id(v.strip()) for v in value.split(",") if v.strip()]
        elif name == "_elements":
            elements += [element_name(v.strip()) for v in value.split(",") if v.strip()]
        elif name == "includeAssociatedData":
            for code in (v.strip() for v in value.split(",") if v.strip()):
                if code in ASSOCIATED_DATA:
                    associated.append(code)
                elif not lenient:
                    raise InvalidRequest(f"includeAssociatedData '{code}' is not supported: this server offers "
                                         f"{LATEST_PROVENANCE} and {RELEVANT_PROVENANCE}", code="not-supported",
                                         expression=("includeAssociatedData",))
                else:
                    ignored.append(f"includeAssociatedData {code}")
        elif name in UNSUPPORTED:
            if not lenient:
                raise InvalidRequest(f"$export parameter {name} is not supported by this server",
                                     code="not-supported", expression=(name,))
            ignored.append(f"parameter {name}")
    return ExportParams(
        types=tuple(dict.fromkeys(types)) if types is not None else None, since=since,
        type_filters={k: tuple(v) for k, v in filters.items()}, output_format=output_format,
        lenient=lenient, ignored=tuple(ignored),
        patients=tuple(dict.fromkeys(patients)) if patients is not None else None,
        elements=tuple(dict.fromkeys(elements)), associated=tuple(dict.fromkeys(associated)),
    )


def element_name(value: str) -> str:
    """One ``_elements`` name: a root element, alone or of a type (export.html#query-parameters); a path below
    the root, or anything else, is a 400."""
    if _ELEMENT.match(value) is None:
        raise InvalidRequest(f"_elements '{value}' is not a root element ('id' or 'Patient.id')", code="invalid",
                             expression=("_elements",))
    return value


def elements_of(elements: tuple[str, ...] | list[str], resource_type: str) -> tuple[str, ...]:
    """The ``_elements`` names that apply to ``resource_type``: those without a type, and its own (empty: the
    resources of this type are exported whole, as nothing was asked of them)."""
    out = []
    for name in elements:
        kind, dot, element = name.rpartition(".")
        if not dot or kind == resource_type:
            out.append(element)
    return tuple(out)


def patient_id(reference: str) -> str:
    """The id of a ``patient`` parameter's reference (``Patient/123``, or absolute); anything else is a 400."""
    match = _PATIENT_REFERENCE.search(reference)
    if match is None:
        raise InvalidRequest(f"patient '{reference}' is not a reference to a Patient", code="invalid",
                             expression=("patient",))
    return match.group(1)


def parse_output_format(value: str) -> str:
    """``_outputFormat``: NDJSON under any of its three names; anything else is a 400. An unencoded '+' in the
    query string arrives as a space (``application/fhir ndjson``) and is read as the '+' it was."""
    if value.strip().lower().replace(" ", "+") not in OUTPUT_FORMATS:
        raise InvalidRequest(f"_outputFormat '{value}' is not supported; use {NDJSON}",
                             code="not-supported", expression=("_outputFormat",))
    return NDJSON


def split_type_filter(value: str) -> tuple[str, str]:
    """``Observation?code=x&date=gt2020`` -> ("Observation", "code=x&date=gt2020") (export.html#_typefilter)."""
    resource_type, sep, query = value.partition("?")
    if not sep or not resource_type or not query:
        raise InvalidRequest(f"_typeFilter '{value}' must look like ResourceType?search-parameters",
                             code="invalid", expression=("_typeFilter",))
    return resource_type.strip(), query


def filter_pairs(query: str) -> list[tuple[str, str]]:
    """The search parameters of one ``_typeFilter`` query."""
    return parse_qsl(query, keep_blank_values=True)
