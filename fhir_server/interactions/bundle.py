"""transaction and batch (https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/bundle.html).

A transaction is all-or-nothing: one MongoDB multi-document transaction, re-run by the driver on transient
conflicts. Inside it, in the spec's order: DELETE, then POST (``ifNoneExist`` resolved in the transaction's
snapshot), PUT/PATCH, then GET. References to other entries and conditional references
(``Patient?identifier=s|v``) are resolved and rewritten before anything is stored. A batch runs every entry on
its own, each with its own status and OperationOutcome. ``GET metadata`` reads the CapabilityStatement.

References between entries (https://hl7.org/fhir/R4/bundle.html#references, http.html#trules: the server
"SHALL replace all references in the bundle that match the fullUrl" of a resource it creates or updates).
Every ``Reference.reference`` of a POST or PUT entry is read as the absolute URL it names
(``references.bundle_reference``) and, when an entry has that fullUrl, rewritten to ``Type/id`` of what that entry
writes:

- an absolute reference (``urn:uuid:...``, ``http://example.com/fhir/Patient/zz9``, this server's own base)
  names the entry with exactly that fullUrl;
- a relative ``Patient/zz9`` is relative to the base of the referring entry's fullUrl when that is a RESTful
  ``[base]/Type/id``, and to this server's base when it is a ``urn:uuid`` (or absent);
- a version-specific reference (``Patient/zz9/_history/1``) is matched without its version. When the entry
  carries no ``meta.versionId`` or that one, it names the entry's content and becomes ``Patient/<id>/_history/<n>``
  with ``n`` the version this transaction stores (checked once stored); a different version of a resource the
  transaction updates keeps its number (the server's own earlier version), of one it creates is 400 (none exists);
- a reference that names no entry stays as written. A relative one then names *this server's* resource, even in an
  entry whose fullUrl has a foreign base: in a transaction the server stands in for the sender's base
  (http.html#trules: a fullUrl the server has no mapping for is taken as if its base were the server's), so
  ``Patient/zz9`` next to ``http://example.com/fhir/Observation/1`` is this server's Patient/zz9 when no entry is
  ``http://example.com/fhir/Patient/zz9``. A ``urn:uuid`` that names no entry is 400.

``Prefer: return=`` (http.html#ops, #transaction-response) shapes every write entry of a transaction-response or
batch-response: ``representation`` puts the stored resource in ``entry.resource``; ``OperationOutcome`` gives
``entry.response.outcome`` (the warnings, or a note of success); ``minimal`` leaves status, location, etag and
lastModified only. Without the header a write entry has no resource and an outcome only when validation warned
(as before): the spec leaves it to the server ("may"), a registry Bundle carries a dozen resources the client
already holds, and location and etag name each stored version exactly. GET entries always carry what they read.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pymongo.asynchronous.client_session import AsyncClientSession

from fhir_server import fhirjson
from fhir_server.context import RequestContext
from fhir_server.errors import (
    Conflict,
    FhirError,
    Gone,
    InvalidRequest,
    Issue,
    NotFound,
    PreconditionFailed,
    UnprocessableEntity,
)
from fhir_server.interactions import capabilities
from fhir_server.interactions import read as read_interaction
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import conditional_delete, delete
from fhir_server.interactions.patch import parse_patch, patch
from fhir_server.interactions.references import bundle_reference, collect_references, rewrite_references
from fhir_server.interactions.result import RETURN_PREFERENCES, InteractionResult, ReturnPreference
from fhir_server.interactions.search import find_matching_each
from fhir_server.interactions.unit_of_work import (
    UnitOfWork,
    new_id,
    normalized_criteria,
    query_params,
    run_in_transaction,
)
from fhir_server.interactions.update import check_matched_id, update, version_after_update
from fhir_server.interactions.versioning import etag_matches
from fhir_server.resources import check_structure, require_supported_type
from fhir_server.services import Services
from fhir_server.storage.documents import StoredVersion

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_TYPE_ID = re.compile(r"^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_TYPE_ID_VERSION = re.compile(r"^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/([^/]+)$")


@dataclass
class Entry:
    index: int
    full_url: str | None
    method: str
    url: str  # relative to the base: "Patient", "Patient/1", "Patient?identifier=..."
    resource: dict[str, Any] | None
    if_none_exist: str | None
    if_match: str | None
    if_none_match: str | None

    @property
    def path(self) -> str:
        return self.url.split("?", 1)[0].strip("/")

    @property
    def query(self) -> str:
        return self.url.split("?", 1)[1] if "?" in self.url else ""

    @property
    def resource_type(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def label(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def reads_metadata(self) -> bool:
        return self.method in ("GET", "HEAD") and self.path == "metadata"


async def process_bundle(ctx: RequestContext, services: Services, body: Any, *,
                         prefer_return: str | None = None) -> dict[str, Any]:
    """``prefer_return``: the ``return`` of the request's Prefer header; an unknown value counts as none."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base takes a Bundle of type transaction or batch", code="invalid")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequest(f"Bundle.type must be transaction or batch, not '{kind}'", code="value",
                             expression=("Bundle.type",))
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be an array", code="structure", expression=("Bundle.entry",))
    preference = next((p for p in RETURN_PREFERENCES if p == prefer_return), None)
    if kind == "batch":
        return await BatchProcessor(ctx, services, preference).run(raw_entries)
    entries = [_parse_entry(ctx, i, raw) for i, raw in enumerate(raw_entries)]
    return await TransactionProcessor(ctx, services, entries, preference).run()


# -- entry parsing -----------------------------------------------------------------------------------------


def _parse_entry(ctx: RequestContext, index: int, raw: Any) -> Entry:
    label = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{label} must be an object", code="structure", expression=(label,))
    request = raw.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidRequest(f"{label}.request needs a method and a url", code="required",
                             expression=(f"{label}.request",))
    method = str(request["method"]).upper()
    if method not in _ORDER:
        raise InvalidRequest(f"{label}.request.method '{method}' is not supported", code="not-supported",
                             expression=(f"{label}.request.method",))
    for field in ("ifNoneExist", "ifMatch", "ifNoneMatch"):
        if not isinstance(request.get(field), str | None):
            raise InvalidRequest(f"{label}.request.{field} must be a string", code="structure",
                                 expression=(f"{label}.request.{field}",))
    url = _relative_url(ctx, str(request["url"]))
    entry = Entry(index, raw.get("fullUrl"), method, url, raw.get("resource"), request.get("ifNoneExist"),
                  request.get("ifMatch"), request.get("ifNoneMatch"))
    _check_entry(entry)
    return entry


def _relative_url(ctx: RequestContext, url: str) -> str:
    if url.startswith(ctx.base_url + "/"):
        return url[len(ctx.base_url) + 1:]
    return url.lstrip("/")


def _check_entry(entry: Entry) -> None:
    if entry.reads_metadata:
        return
    try:
        require_supported_type(entry.resource_type)
        if entry.method in ("POST", "PUT"):
            if entry.resource is None:
                raise InvalidRequest(f"{entry.method} needs a resource", code="required")
            expected_id = None
            match = _TYPE_ID.match(entry.path)
            if entry.method == "PUT" and match and not entry.query:
                expected_id = match.group(2)
                if isinstance(entry.resource, dict) and entry.resource.get("id") is None:
                    raise InvalidRequest("PUT needs the resource to carry the id of the url", code="required")
            check_structure(entry.resource, entry.resource_type, expected_id)
        if entry.method == "POST" and entry.path != entry.resource_type:
            raise InvalidRequest(f"POST url must be a resource type, not '{entry.url}'", code="invalid")
        if entry.method in ("DELETE", "PATCH") and not (_TYPE_ID.match(entry.path) or entry.query):
            raise InvalidRequest(f"{entry.method} url needs an id or search criteria", code="invalid")
        if entry.method == "PATCH" and not _TYPE_ID.match(entry.path):
            raise InvalidRequest("Conditional PATCH is not supported; name the resource", code="not-supported")
    except FhirError as exc:
        raise _at_entry(exc, entry) from exc


def _at_entry(exc: FhirError, entry: Entry) -> FhirError:
    """The same error, its issues located at the entry (diagnostics prefixed, expression under the entry)."""
    located = []
    for issue in exc.issues:
        expression = tuple(_under_entry(entry, e) for e in issue.expression) or (entry.label,)
        located.append(Issue(issue.severity, issue.code,
                             f"{entry.label} ({entry.method} {entry.url}): {issue.diagnostics}", expression))
    exc.issues = located
    return exc


def _under_entry(entry: Entry, expression: str) -> str:
    """``Observation.code`` of entry 2 -> ``Bundle.entry[2].resource.code`` (a FHIRPath from the Bundle)."""
    if expression.startswith("Bundle"):
        return expression
    head, _, rest = expression.partition(".")
    if head == entry.resource_type or (head[:1].isupper() and "[" not in head and rest):
        expression = rest
    return f"{entry.label}.resource.{expression}" if expression else f"{entry.label}.resource"


def _patch_document(entry: Entry) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary resource (https://hl7.org/fhir/R4/http.html#patch)."""
    binary = entry.resource
    if not isinstance(binary, dict) or binary.get("resourceType") != "Binary" or "data" not in binary:
        raise InvalidRequest("A PATCH entry's resource is a Binary with a base64 JSON Patch", code="invalid")
    try:
        return fhirjson.loads(base64.b64decode(binary["data"]))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"The Binary's data is not base64 JSON: {exc}", code="invalid") from exc


# -- references --------------------------------------------------------------------------------------------


def _is_conditional_reference(reference: str) -> bool:
    return "?" in reference and not reference.startswith(("urn:", "http:", "https:", "#"))


# -- response entries --------------------------------------------------------------------------------------


def _response_entry(ctx: RequestContext, entry: Entry, result: InteractionResult,
                    preference: ReturnPreference | None) -> dict[str, Any]:
    """An entry of a transaction-response or batch-response, shaped by ``Prefer: return`` (module docstring)."""
    out: dict[str, Any] = {}
    reads = entry.method in ("GET", "HEAD")
    if result.resource is not None and (reads or preference == "representation"):
        out["resource"] = result.resource
    response = result.response_entry(ctx)
    if not reads and preference == "minimal":
        response.pop("outcome", None)
    elif not reads and preference == "OperationOutcome":
        response["outcome"] = result.outcome_or_note(entry.method)
    out["response"] = response
    return out


# -- transaction -------------------------------------------------------------------------------------------


class TransactionProcessor:
    def __init__(self, ctx: RequestContext, services: Services, entries: list[Entry],
                 preference: ReturnPreference | None = None) -> None:
        self.ctx = ctx
        self.services = services
        self.entries = entries
        self.preference = preference

    async def run(self) -> dict[str, Any]:
        self._check_unique_full_urls()
        results = await self.services.store.run_transaction(self._attempt)
        await self.services.after_commit([r for r in results if r is not None])
        return {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [_response_entry(self.ctx, entry, result, self.preference)
                      for entry, result in zip(self.entries, results, strict=True)],
        }

    def _check_unique_full_urls(self) -> None:
        seen: dict[str, int] = {}
        for entry in self.entries:
            if entry.full_url:
                if entry.full_url in seen:
                    raise InvalidRequest(f"{entry.label}.fullUrl '{entry.full_url}' repeats entry "
                                         f"{seen[entry.full_url]}", code="invalid",
                                         expression=(f"{entry.label}.fullUrl",))
                seen[entry.full_url] = entry.index

    async def _attempt(self, session: AsyncClientSession) -> list[InteractionResult]:
        uow = UnitOfWork(self.ctx, self.services, session)
        state = _TransactionState(uow, self.entries)
        return await state.execute()


class _TransactionState:
    """One attempt of a transaction; rebuilt from the parsed entries whenever the driver re-runs it."""

    def __init__(self, uow: UnitOfWork, entries: list[Entry]) -> None:
        self.uow = uow
        self.entries = entries
        # Never mutated: a re-run of the transaction starts again from the parsed entries.
        self.resources: dict[int, dict[str, Any] | None] = {e.index: e.resource for e in entries}
        self.results: dict[int, InteractionResult] = {}
        self.id_map: dict[str, str] = {}  # fullUrl -> Type/id
        self.entry_at: dict[str, Entry] = {e.full_url: e for e in entries if e.full_url}
        self.conditional_map: dict[str, str] = {}  # conditional reference -> Type/id
        self.criteria_map: dict[str, str] = {}  # normalized conditional criteria -> Type/id
        self.version_targets: dict[int, Entry] = {}  # entries a version-specific reference names, by index
        self.promised_versions: dict[int, int] = {}  # their index -> the vid their write stores
        self.post_ids: dict[int, str] = {}  # entries to create -> new id
        self.targets: dict[tuple[str, str], int] = {}  # resources written -> entry index
        self.invalid: list[FhirError] = []  # 422s of entries, reported together

    async def execute(self) -> list[InteractionResult]:
        by_order = sorted(self.entries, key=lambda e: (_ORDER[e.method], e.index))
        for entry in (e for e in by_order if e.method == "DELETE"):
            await self._guard(entry, self._delete(entry))
        await self.uow.flush()
        await self._resolve_posts([e for e in by_order if e.method == "POST"])
        for entry in (e for e in by_order if e.method == "PUT"):
            await self._guard(entry, self._resolve_put_identity(entry))
        await self._resolve_conditional_references()
        await self._rewrite_references()
        self._announce()
        for entry in (e for e in by_order if e.method == "POST" and e.index in self.post_ids):
            await self._guard(entry, self._create(entry))
        for entry in (e for e in by_order if e.method in ("PUT", "PATCH")):
            await self._guard(entry, self._put_or_patch(entry))
        self._check_promised_versions()
        if self.invalid:  # every entry that breaks a profile, reported together; nothing is stored
            raise UnprocessableEntity(issues=[issue for exc in self.invalid for issue in exc.issues])
        await self.uow.flush()
        for entry in (e for e in by_order if e.method in ("GET", "HEAD")):
            await self._guard(entry, self._get(entry))
        return [self.results.get(e.index) or InteractionResult(200) for e in self.entries]

    async def _guard(self, entry: Entry, step: Any) -> None:
        try:
            await step
        except UnprocessableEntity as exc:
            self.invalid.append(_at_entry(exc, entry))
        except FhirError as exc:
            raise _at_entry(exc, entry) from exc

    def _announce(self) -> None:
        """Let validation resolve references to resources this Bundle is about to write."""
        for entry in self.entries:
            resource = self.resources[entry.index]
            if resource is None or entry.method not in ("POST", "PUT"):
                continue
            target = self.id_map.get(entry.full_url or "")
            if target is None and entry.method == "PUT" and resource.get("id"):
                target = f"{entry.resource_type}/{resource['id']}"
            if target is not None:
                self.uow.announce(target, {**resource, "id": target.split("/", 1)[1]},
                                  new=entry.index in self.post_ids)

    def _claim_target(self, entry: Entry, resource_type: str, resource_id: str) -> None:
        key = (resource_type, resource_id)
        if key in self.targets:
            raise InvalidRequest(
                f"{resource_type}/{resource_id} is also the target of Bundle.entry[{self.targets[key]}]; a "
                "transaction may change a resource only once", code="business-rule")
        self.targets[key] = entry.index

    # DELETE
    async def _delete(self, entry: Entry) -> None:
        match = _TYPE_ID.match(entry.path)
        if match and not entry.query:
            self._claim_target(entry, match.group(1), match.group(2))
            self.results[entry.index] = await delete(self.uow, match.group(1), match.group(2))
        else:
            result = await conditional_delete(self.uow, entry.resource_type, entry.query)
            if result.version is not None:  # the resource it deleted counts as changed, like a direct DELETE
                self._claim_target(entry, result.version.type, result.version.id)
            self.results[entry.index] = result

    # POST: identity first (ifNoneExist in this transaction's snapshot), creation after references are known
    async def _resolve_posts(self, posts: list[Entry]) -> None:
        """``ifNoneExist`` of every POST, evaluated in this transaction's snapshot: one query per resource type
        for all the criteria of that type (a registry Bundle has a dozen), not one per entry."""
        keys: dict[int, str] = {}
        criteria: dict[str, dict[str, list[tuple[str, str]]]] = {}  # type -> key -> params
        for entry in posts:
            if entry.if_none_exist:
                await self._guard(entry, self._criteria_of(entry, keys, criteria))
        await self.uow.flush()
        found: dict[str, list[dict[str, Any]]] = {}
        for resource_type, by_key in criteria.items():
            matches = await find_matching_each(self.uow.ctx, self.uow.services, resource_type,
                                               list(by_key.values()), session=self.uow.session, limit=2)
            found.update(zip(by_key, matches, strict=True))
        for entry in posts:
            key = keys.get(entry.index)
            await self._guard(entry, self._resolve_post(entry, key, found.get(key, []) if key else []))

    async def _criteria_of(self, entry: Entry, keys: dict[int, str],
                           criteria: dict[str, dict[str, list[tuple[str, str]]]]) -> None:
        assert entry.if_none_exist
        key = normalized_criteria(entry.resource_type, entry.if_none_exist)
        keys[entry.index] = key
        criteria.setdefault(entry.resource_type, {})[key] = query_params(entry.if_none_exist)

    async def _resolve_post(self, entry: Entry, key: str | None, matches: list[dict[str, Any]]) -> None:
        resource_type = entry.resource_type
        if key and key in self.criteria_map:  # the same conditional create twice in one Bundle: one resource
            self._map(entry, self.criteria_map[key])
            return
        if len(matches) > 1:
            raise PreconditionFailed(f"ifNoneExist '{entry.if_none_exist}' matches {len(matches)} resources")
        if matches:
            existing = StoredVersion.from_current(resource_type, matches[0])
            self._map(entry, f"{resource_type}/{existing.id}", key)
            self.results[entry.index] = InteractionResult(200, existing.resource, existing)
            self.resources[entry.index] = None
            return
        resource_id = new_id()
        self.post_ids[entry.index] = resource_id
        self._map(entry, f"{resource_type}/{resource_id}", key)

    def _map(self, entry: Entry, reference: str, key: str | None = None) -> None:
        if entry.full_url:
            self.id_map[entry.full_url] = reference
        if key:
            self.criteria_map[key] = reference

    async def _resolve_put_identity(self, entry: Entry) -> None:
        match = _TYPE_ID.match(entry.path)
        if match and not entry.query:
            self._map(entry, f"{match.group(1)}/{match.group(2)}")
            return
        key = normalized_criteria(entry.resource_type, entry.query)
        matches = await self.uow.matches(entry.resource_type, entry.query)
        if len(matches) > 1:
            raise PreconditionFailed(f"Conditional update '{entry.url}' matches {len(matches)} resources")
        resource = self.resources[entry.index] or {}
        if matches:
            check_matched_id(resource, matches[0]["_id"])
        target = matches[0]["_id"] if matches else resource.get("id") or new_id()
        if not matches:  # like a conditional create: concurrent identical requests conflict on the claim
            self.uow.claim(entry.resource_type, entry.query, f"{entry.resource_type}/{target}")
        self.resources[entry.index] = {**resource, "id": target}
        self._map(entry, f"{entry.resource_type}/{target}", key)

    async def _resolve_conditional_references(self) -> None:
        wanted: set[str] = set()
        for entry in self.entries:
            if entry.method in ("POST", "PUT"):
                collect_references(self.resources[entry.index], wanted)
        for reference in sorted(r for r in wanted if _is_conditional_reference(r)):
            resource_type, _, query = reference.partition("?")
            try:
                require_supported_type(resource_type)
                key = normalized_criteria(resource_type, query)
            except FhirError as exc:
                raise InvalidRequest(f"Invalid conditional reference '{reference}': {exc}", code="invalid") from exc
            if key in self.criteria_map:
                self.conditional_map[reference] = self.criteria_map[key]
                continue
            matches = await self.uow.matches(resource_type, query)
            if len(matches) > 1:
                raise PreconditionFailed(f"Conditional reference '{reference}' matches {len(matches)} resources")
            if not matches:
                raise NotFound(f"Conditional reference '{reference}' matches no resource")
            self.conditional_map[reference] = f"{resource_type}/{matches[0]['_id']}"

    # references to other entries (module docstring)
    async def _rewrite_references(self) -> None:
        """Rewrite every reference that names an entry. A version-specific one needs the version its entry
        stores, which depends on that entry's own rewritten content: a first pass leaves those as written, then
        the versions are worked out and the entries holding them rewritten again from their originals."""
        writes = [e for e in self.entries if e.method in ("POST", "PUT") and self.resources[e.index] is not None]
        originals = {e.index: self.resources[e.index] for e in writes}
        waiting: dict[int, Entry] = {}
        for entry in writes:
            await self._guard(entry, self._rewrite(entry, originals[entry.index], waiting))
        for target in self.version_targets.values():
            await self._guard(target, self._promise_version(target))
        for entry in waiting.values():
            await self._guard(entry, self._rewrite(entry, originals[entry.index], {}))

    async def _rewrite(self, entry: Entry, original: dict[str, Any] | None, waiting: dict[int, Entry]) -> None:
        """``original`` with its references rewritten; ``entry`` joins ``waiting`` when it holds a
        version-specific reference to an entry whose stored version is not known yet (left as written)."""

        def resolve(reference: str) -> str | None:
            if reference in self.conditional_map:
                return self.conditional_map[reference]
            named = bundle_reference(reference, entry.full_url, self.uow.ctx.base_url)
            target = self.id_map.get(named.url) if named else None
            if named is None or target is None:
                if reference.startswith(("urn:uuid:", "urn:oid:")):
                    raise InvalidRequest(f"Reference '{reference}' names no entry of this Bundle", code="not-found")
                return None
            if named.version is None:
                return target
            version = self._version_named(self.entry_at[named.url], reference, named.version)
            if version is None:
                waiting[entry.index] = entry
                return None
            return f"{target}/_history/{version}"

        self.resources[entry.index] = rewrite_references(original, resolve)

    def _version_named(self, target: Entry, reference: str, version: str) -> str | None:
        """The version of ``target``'s resource ``reference`` names; None while the one it stores is unknown."""
        carried = ((target.resource or {}).get("meta") or {}).get("versionId")
        if carried is not None and carried != version:  # another version than the entry's: not the entry
            if target.index in self.post_ids:
                raise InvalidRequest(f"Reference '{reference}' names version {version} of {target.label}, a "
                                     f"resource this transaction creates (it carries version {carried})",
                                     code="not-found")
            return version
        promised = self.promised_versions.get(target.index)
        if promised is None:
            self.version_targets[target.index] = target
        return None if promised is None else str(promised)

    async def _promise_version(self, target: Entry) -> None:
        """The vid the write of ``target`` will store, as ``update``/``create`` will decide it."""
        done = self.results.get(target.index)  # a POST whose ifNoneExist matched: nothing is written
        if done is not None and done.version is not None:
            self.promised_versions[target.index] = done.version.vid
        elif target.index in self.post_ids:
            self.promised_versions[target.index] = 1
        else:
            resource_type, resource_id = self.id_map[target.full_url or ""].split("/", 1)
            current = await self.uow.current(resource_type, resource_id)
            resource = self.resources[target.index] or {}
            self.promised_versions[target.index] = version_after_update(current, resource)

    def _check_promised_versions(self) -> None:
        """A version-specific reference was rewritten to the version its entry was to store; if the write
        stored another (its content was itself changed by a versioned reference), fail rather than dangle."""
        for index, vid in self.promised_versions.items():
            result = self.results.get(index)
            if result is not None and result.version is not None and result.version.vid != vid:
                raise Conflict(f"Bundle.entry[{index}] stored version {result.version.vid}, not the version {vid} "
                               "a version-specific reference to it was given")

    async def _create(self, entry: Entry) -> None:
        resource = self.resources[entry.index]
        assert resource is not None
        resource_id = self.post_ids[entry.index]
        self._claim_target(entry, entry.resource_type, resource_id)
        if entry.if_none_exist:
            self.uow.claim(entry.resource_type, entry.if_none_exist, f"{entry.resource_type}/{resource_id}")
        resource = {k: v for k, v in resource.items() if k != "id"}
        self.results[entry.index] = await create(self.uow, resource, assigned_id=resource_id)

    async def _put_or_patch(self, entry: Entry) -> None:
        if entry.method == "PATCH":
            match = _TYPE_ID.match(entry.path)
            assert match
            self._claim_target(entry, match.group(1), match.group(2))
            operations = parse_patch(_patch_document(entry))
            self.results[entry.index] = await patch(self.uow, match.group(1), match.group(2), operations,
                                                    if_match=entry.if_match)
            return
        resource = self.resources[entry.index]
        assert resource is not None
        target = self.id_map.get(entry.full_url or "") or f"{entry.resource_type}/{resource['id']}"
        resource_type, resource_id = target.split("/", 1)
        self._claim_target(entry, resource_type, resource_id)
        self.results[entry.index] = await update(self.uow, resource, resource_id, if_match=entry.if_match,
                                                 if_none_match=entry.if_none_match)

    async def _get(self, entry: Entry) -> None:
        self.results[entry.index] = await get_entry(self.uow.ctx, self.uow.services, entry, self.uow.session)


async def get_entry(ctx: RequestContext, services: Services, entry: Entry,
                    session: AsyncClientSession | None) -> InteractionResult:
    """A GET entry: read, vread, search or the CapabilityStatement, seeing the transaction's own writes when in
    one."""
    from fhir_server.interactions import search as search_interaction

    if entry.reads_metadata:
        return InteractionResult(200, capabilities.capability_statement(ctx, services))
    versioned = _TYPE_ID_VERSION.match(entry.path)
    if versioned:
        return await read_interaction.vread(ctx, services, *versioned.groups(), session=session)
    match = _TYPE_ID.match(entry.path)
    if match and not entry.query:
        current = await services.store.current(ctx, match.group(1), match.group(2), session=session)
        if current is None:
            raise NotFound(f"{entry.path} is not known")
        if current.deleted:  # like vread of a deletion: an error (a transaction fails; a batch entry is 410)
            raise Gone(f"{entry.path} was deleted", headers={"ETag": current.etag})
        if entry.if_none_match and etag_matches(entry.if_none_match, current.vid):
            return InteractionResult(304, None, current)  # the client's copy is current (request.ifNoneMatch)
        return InteractionResult(200, current.resource, current)
    params = parse_qsl(entry.query, keep_blank_values=True)
    resource_type = entry.resource_type if entry.path else None
    bundle = await search_interaction.search(ctx, services, resource_type, params, session=session)
    return InteractionResult(200, bundle, None)


# -- batch -------------------------------------------------------------------------------------------------


class BatchProcessor:
    """Every entry on its own: its own transaction, its own status; one failure does not stop the others."""

    def __init__(self, ctx: RequestContext, services: Services, preference: ReturnPreference | None = None) -> None:
        self.ctx = ctx
        self.services = services
        self.preference = preference

    async def run(self, raw_entries: list[Any]) -> dict[str, Any]:
        out = []
        for index, raw in enumerate(raw_entries):
            out.append(await self._one(index, raw))
        return {"resourceType": "Bundle", "type": "batch-response", "entry": out}

    async def _one(self, index: int, raw: Any) -> dict[str, Any]:
        try:
            entry = _parse_entry(self.ctx, index, raw)
            result = await self._execute(entry)
        except FhirError as exc:
            return {"response": InteractionResult(exc.status, outcome=exc.outcome()).response_entry(self.ctx)}
        return _response_entry(self.ctx, entry, result, self.preference)

    async def _execute(self, entry: Entry) -> InteractionResult:
        if entry.method in ("GET", "HEAD"):
            return await get_entry(self.ctx, self.services, entry, None)
        for reference in collect_references(entry.resource, set()):
            if reference.startswith("urn:uuid:"):
                raise InvalidRequest(f"A batch entry cannot reference another entry ('{reference}')",
                                     code="invalid")
        results = await run_in_transaction(
            self.ctx, self.services, lambda uow: _TransactionState(uow, [entry]).execute())
        await self.services.after_commit(results)
        return results[0]
