"""A batch or transaction Bundle's entries as requests (https://hl7.org/fhir/R4/bundle.html#transaction).

Each ``entry.request`` goes through the one request parser (``request.parse_request``), as an HTTP request
would: its url (relative, or absolute with this server's base), its method, ``ifMatch``, ``ifNoneMatch``,
``ifNoneExist`` and ``ifModifiedSince`` as the headers they stand for, ``entry.resource`` as the body (a PATCH
entry's Binary holds the JSON Patch, http.html#patch). An entry's errors are located at the entry: the
diagnostics name it, the expressions are FHIRPaths from the Bundle (``Bundle.entry[2].resource.code``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from fhir_server import fhirjson
from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, InvalidRequest, Issue
from fhir_server.interactions.request import BUNDLES, FhirRequest, Interaction, parse_request

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")  # the R4 HTTPVerb codes
_HEADERS = {"ifMatch": "if-match", "ifNoneMatch": "if-none-match", "ifNoneExist": "if-none-exist",
            "ifModifiedSince": "if-modified-since"}


@dataclass(frozen=True)
class BundleEntry:
    index: int
    full_url: str | None
    url: str  # entry.request.url relative to the base, as sent (for messages)
    request: FhirRequest

    @property
    def label(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def resource_type(self) -> str:
        return self.request.resource_type or ""

    @property
    def resource(self) -> dict[str, Any] | None:
        """The resource a create or update entry writes."""
        return self.request.body if self.request.interaction in (Interaction.CREATE, Interaction.UPDATE) else None


def bundle_entries(bundle: dict[str, Any]) -> list[Any]:
    """``Bundle.entry`` as sent (each parsed on its own: a batch answers a bad entry in its place)."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest("Bundle.entry must be an array", code="structure", expression=("Bundle.entry",))
    return entries


async def parse_entry(ctx: RequestContext, index: int, raw: Any) -> BundleEntry:
    """One entry as a request; 400 when its request is not one, and whatever the URL's parse says (404, 405)."""
    label = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{label} must be an object", code="structure", expression=(label,))
    request = raw.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidRequest(f"{label}.request needs a method and a url", code="required",
                             expression=(f"{label}.request",))
    method = str(request["method"]).upper()
    if method not in _METHODS:
        raise InvalidRequest(f"{label}.request.method '{method}' is not supported", code="not-supported",
                             expression=(f"{label}.request.method",))
    headers: dict[str, str] = {}
    for field, header in _HEADERS.items():
        value = request.get(field)
        if not isinstance(value, str | None):
            raise InvalidRequest(f"{label}.request.{field} must be a string", code="structure",
                                 expression=(f"{label}.request.{field}",))
        if value is not None:
            headers[header] = value
    full_url = raw.get("fullUrl")
    if not isinstance(full_url, str | None):
        raise InvalidRequest(f"{label}.fullUrl must be a string", code="structure", expression=(f"{label}.fullUrl",))
    url = _relative_url(ctx, str(request["url"]))
    path, _, query = url.partition("?")
    try:  # a HEAD parses as over HTTP: a read's, a search's or a history's, answered without content (response.py)
        parsed = await parse_request(method, path.strip("/"), query, headers, EntryBody(raw.get("resource")))
        if parsed.interaction in BUNDLES:
            raise InvalidRequest("A Bundle entry cannot be itself a batch or transaction", code="not-supported")
    except FhirError as exc:
        raise at_entry(exc, label, f"{method} {url}", path.strip("/").split("/", 1)[0]) from exc
    return BundleEntry(index, full_url, url, parsed)


def _relative_url(ctx: RequestContext, url: str) -> str:
    if url.startswith(ctx.base_url + "/"):
        return url[len(ctx.base_url) + 1:]
    return url.lstrip("/")


class EntryBody:
    """The body of an entry's request: ``entry.resource``."""

    def __init__(self, resource: Any) -> None:
        self._resource = resource

    async def resource(self) -> Any:
        return self._resource

    async def binary(self, resource_id: str | None) -> Any:
        """An entry's Binary is always a resource (bundle.html: a Binary in a Bundle is in FHIR form)."""
        return self._resource

    async def patch_document(self) -> Any:
        """A PATCH entry carries a JSON Patch as a Binary resource, or a FHIRPath Patch as a Parameters resource
        (https://hl7.org/fhir/R4/http.html#patch)."""
        patch = self._resource
        if isinstance(patch, dict) and patch.get("resourceType") == "Parameters":
            return patch
        if not isinstance(patch, dict) or patch.get("resourceType") != "Binary" or "data" not in patch:
            raise InvalidRequest("A PATCH entry's resource is a Binary with a base64 JSON Patch, or a Parameters "
                                 "resource (FHIRPath Patch)", code="invalid")
        try:
            return fhirjson.loads(base64.b64decode(patch["data"]))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"The Binary's data is not base64 JSON: {exc}", code="invalid") from exc

    async def form(self) -> list[tuple[str, str]]:
        raise InvalidRequest("A Bundle entry searches with GET and the criteria in its url", code="not-supported")

    async def optional_resource(self) -> Any:
        return self._resource


def at_entry(exc: FhirError, label: str, request_line: str, resource_type: str | None) -> FhirError:
    """The same error, its issues located at the entry (diagnostics prefixed, expression under the entry)."""
    located = []
    for issue in exc.issues:
        expression = tuple(_under_entry(label, resource_type, e) for e in issue.expression) or (label,)
        located.append(Issue(issue.severity, issue.code, f"{label} ({request_line}): {issue.diagnostics}",
                             expression))
    exc.issues = located
    return exc


def located(exc: FhirError, entry: BundleEntry) -> FhirError:
    """``exc`` located at ``entry`` (``at_entry``)."""
    return at_entry(exc, entry.label, f"{entry.method} {entry.url}", entry.resource_type)


def _under_entry(label: str, resource_type: str | None, expression: str) -> str:
    """``Observation.code`` of entry 2 -> ``Bundle.entry[2].resource.code`` (a FHIRPath from the Bundle)."""
    if expression.startswith("Bundle"):
        return expression
    head, _, rest = expression.partition(".")
    if head == resource_type or (head[:1].isupper() and "[" not in head and rest):
        expression = rest
    return f"{label}.resource.{expression}" if expression else f"{label}.resource"
