"""transaction (https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/bundle.html#transaction).

A transaction is all-or-nothing: one MongoDB multi-document transaction, re-run by the driver on transient
conflicts. Before it starts, every entry is parsed (``parse.py``), authorized and, when it writes a resource,
structurally checked: validation of one entry reads the others (they are announced to the unit of work), so none
may be malformed. Inside it, in the spec's order: DELETE, then POST (``ifNoneExist`` resolved in the
transaction's snapshot, one query per type for all entries), PUT/PATCH, then GET. References to other entries and
conditional references (``Patient?identifier=s|v``) are resolved and rewritten before anything is stored. The
writes are the interaction functions a single request uses (``create``, ``update``, ``patch``, ``delete``), the
reads ``perform_read`` with the transaction's session; what is transaction-specific stays here: the order, the
identities decided before the writes, the rewriting of references and the rule that a resource changes once.

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

The other links http.html#trules names are rewritten too (``references.rewrite_links``): an element of type uri,
url, oid or uuid (an ``Attachment.url``, a ``valueUri``), and an ``<a href>`` or ``<img src>`` of the narrative,
whose value is an entry's fullUrl becomes ``Type/id``; a canonical, or a string that happens to hold it, stays.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fhir_server.conformance import EPOCH_ID
from fhir_server.context import RequestContext
from fhir_server.errors import Conflict, FhirError, InvalidRequest, NotFound, PreconditionFailed, UnprocessableEntity
from fhir_server.interactions import audit, audit_event, authorization
from fhir_server.interactions.bundle.parse import BundleEntry, bundle_entries, located, parse_entry
from fhir_server.interactions.bundle.response import response_entry
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import conditional_delete, delete
from fhir_server.interactions.patch import conditional_patch_target, patch
from fhir_server.interactions.perform import perform_read
from fhir_server.interactions.priming import prime, wanted_ids
from fhir_server.interactions.references import (
    bundle_reference,
    collect_references,
    rewrite_links,
    rewrite_references,
)
from fhir_server.interactions.request import OPERATIONS, FhirRequest, Interaction
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.search import find_matching_of_types
from fhir_server.interactions.unit_of_work import (
    UnitOfWork,
    normalized_criteria,
    query_params,
    run_in_transaction,
)
from fhir_server.interactions.update import check_matched_id, update, version_after_update
from fhir_server.resources import check_structure, require_supported_type
from fhir_server.services import Services

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


async def run_transaction(ctx: RequestContext, services: Services, request: FhirRequest) -> InteractionResult:
    """The transaction Bundle of ``request``, answered with its transaction-response."""
    entries = [await _transaction_entry(ctx, index, raw) for index, raw in enumerate(bundle_entries(request.body))]
    _check_unique_full_urls(entries)
    results = await execute_entries(ctx, services, entries, audited=request)
    return InteractionResult(200, with_entries({"resourceType": "Bundle", "type": "transaction-response"}, [
        response_entry(ctx, entry.request, result, request.prefer_return)
        for entry, result in zip(entries, results, strict=True)]))


async def execute_entries(ctx: RequestContext, services: Services, entries: list[BundleEntry], *,
                          audited: FhirRequest) -> list[InteractionResult]:
    """``entries`` authorized and checked, then performed in one unit of work (all or nothing): a transaction's
    entries, or the one write entry of a batch. ``audited``: the request whose AuditEvent is written in the same
    transaction (the transaction Bundle's, or the batch entry's); a failure's is recorded after it."""
    try:
        for entry in entries:
            try:
                authorization.authorize(ctx, entry.request)
                _check_resource(entry)
            except FhirError as exc:
                raise located(exc, entry) from exc
        return await run_in_transaction(ctx, services, lambda uow: _audited(uow, entries, audited))
    except Exception as exc:
        audit_event.record_failure(ctx, services, audit.asked(audited), exc)
        raise


async def _audited(uow: UnitOfWork, entries: list[BundleEntry], audited: FhirRequest) -> list[InteractionResult]:
    results = await _TransactionState(uow, entries).execute()
    audit.stage_write(uow, audited, results)
    return results


async def _transaction_entry(ctx: RequestContext, index: int, raw: Any) -> BundleEntry:
    entry = await parse_entry(ctx, index, raw)
    if entry.request.interaction in OPERATIONS:  # an operation may write on its own, outside the transaction
        raise located(InvalidRequest("A transaction cannot run an operation; use a batch", code="not-supported"),
                      entry)
    return entry


def _check_resource(entry: BundleEntry) -> None:
    """The structure of what a create or update entry writes (``create``/``update`` are told it is checked)."""
    resource = entry.resource
    if resource is not None:
        check_structure(resource, entry.resource_type, entry.request.resource_id)


def _check_unique_full_urls(entries: list[BundleEntry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.full_url:
            if entry.full_url in seen:
                raise InvalidRequest(f"{entry.label}.fullUrl '{entry.full_url}' repeats entry "
                                     f"{seen[entry.full_url]}", code="invalid", expression=(f"{entry.label}.fullUrl",))
            seen[entry.full_url] = entry.index


def _is_conditional_reference(reference: str) -> bool:
    return "?" in reference and not reference.startswith(("urn:", "http:", "https:", "#"))


class _TransactionState:
    """One attempt of a transaction; rebuilt from the parsed entries whenever the driver re-runs it."""

    def __init__(self, uow: UnitOfWork, entries: list[BundleEntry]) -> None:
        self.uow = uow
        self.entries = entries
        # Never mutated: a re-run of the transaction starts again from the parsed entries.
        self.resources: dict[int, dict[str, Any] | None] = {e.index: e.resource for e in entries}
        self.results: dict[int, InteractionResult] = {}
        self.id_map: dict[str, str] = {}  # fullUrl -> Type/id
        self.entry_at: dict[str, BundleEntry] = {e.full_url: e for e in entries if e.full_url}
        self.conditional_map: dict[str, str] = {}  # conditional reference -> Type/id
        self.criteria_map: dict[str, str] = {}  # normalized conditional criteria -> Type/id
        self.version_targets: dict[int, BundleEntry] = {}  # entries a version-specific reference names, by index
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
        await self._prime_stored()
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

    async def _guard(self, entry: BundleEntry, step: Awaitable[None]) -> None:
        try:
            await step
        except UnprocessableEntity as exc:
            self.invalid.append(located(exc, entry))
        except FhirError as exc:
            raise located(exc, entry) from exc

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

    async def _prime_stored(self) -> None:
        """The stored versions the PUT and PATCH entries update and the stored resources the entries refer to,
        read with one query per type where a type has several (``interactions/priming.py``): a Bundle of an
        export's resources (``fhir-server load``: 100 updates) would otherwise read each current version and each
        reference with a query of its own. References to what this Bundle writes are not read."""
        targets: list[tuple[str, str]] = []
        for entry in self.entries:
            resource = self.resources[entry.index]
            if entry.method == "PATCH" and entry.request.resource_id is not None:
                targets.append((entry.resource_type, entry.request.resource_id))
            elif entry.method == "PUT" and resource is not None:
                targets.append(self._put_target(entry, resource))
        referring = [self.resources[e.index] for e in self.entries if e.method in ("POST", "PUT")]
        wanted = wanted_ids(referring)
        for kind, ids in wanted.items():
            ids -= {ident for ident in ids if self.uow.pending_resource(f"{kind}/{ident}") is not None}
        for kind, ident in targets:
            wanted.setdefault(kind, set()).add(ident)
        await prime(self.uow, wanted, at_least=2)

    def _put_target(self, entry: BundleEntry, resource: dict[str, Any]) -> tuple[str, str]:
        """The type and id a PUT entry writes (its identity as resolved: ``_resolve_put_identity``)."""
        target = self.id_map.get(entry.full_url or "") or f"{entry.resource_type}/{resource['id']}"
        resource_type, resource_id = target.split("/", 1)
        return resource_type, resource_id

    def _claim_target(self, entry: BundleEntry, resource_type: str, resource_id: str) -> None:
        key = (resource_type, resource_id)
        if key in self.targets:
            raise InvalidRequest(
                f"{resource_type}/{resource_id} is also the target of Bundle.entry[{self.targets[key]}]; a "
                "transaction may change a resource only once", code="business-rule")
        self.targets[key] = entry.index

    # DELETE
    async def _delete(self, entry: BundleEntry) -> None:
        resource_id = entry.request.resource_id
        if resource_id is not None:
            self._claim_target(entry, entry.resource_type, resource_id)
            self.results[entry.index] = await delete(self.uow, entry.resource_type, resource_id,
                                                     if_match=entry.request.if_match,
                                                     if_none_match=entry.request.if_none_match)
        else:
            result = await conditional_delete(self.uow, entry.resource_type, entry.request.query,
                                              if_match=entry.request.if_match,
                                              if_none_match=entry.request.if_none_match)
            if result.version is not None:  # the resource it deleted counts as changed, like a direct DELETE
                self._claim_target(entry, result.version.type, result.version.id)
            self.results[entry.index] = result

    # POST: identity first (ifNoneExist in this transaction's snapshot), creation after references are known
    async def _resolve_posts(self, posts: list[BundleEntry]) -> None:
        """``ifNoneExist`` of every POST, evaluated in this transaction's snapshot: one command for all the criteria
        of every type (a registry Bundle has a dozen of five types), not one per entry or per type, which also
        reads the conformance epoch the validation of the entries needs (``UnitOfWork.epoch``)."""
        keys: dict[int, str] = {}
        criteria: dict[str, dict[str, list[tuple[str, str]]]] = {}  # type -> key -> params
        for entry in posts:
            if entry.request.if_none_exist:
                await self._guard(entry, self._criteria_of(entry, keys, criteria))
        await self.uow.flush()
        found: dict[str, list[dict[str, Any]]] = {}
        if criteria:  # else no command at all: the validator reads the epoch itself
            matches, self.uow.epoch = await find_matching_of_types(
                self.uow.ctx, self.uow.services, {kind: list(by_key.values()) for kind, by_key in criteria.items()},
                EPOCH_ID, session=self.uow.session, limit=2)
        for resource_type, by_key in criteria.items():
            found.update(zip(by_key, matches[resource_type], strict=True))
            for each in matches[resource_type]:
                self.uow.remember_matches(resource_type, each)
        for entry in posts:
            key = keys.get(entry.index)
            await self._guard(entry, self._resolve_post(entry, key, found.get(key, []) if key else []))

    async def _criteria_of(self, entry: BundleEntry, keys: dict[int, str],
                           criteria: dict[str, dict[str, list[tuple[str, str]]]]) -> None:
        if_none_exist = entry.request.if_none_exist
        assert if_none_exist
        key = normalized_criteria(entry.resource_type, if_none_exist)
        keys[entry.index] = key
        criteria.setdefault(entry.resource_type, {})[key] = query_params(if_none_exist)

    async def _resolve_post(self, entry: BundleEntry, key: str | None, matches: list[dict[str, Any]]) -> None:
        resource_type = entry.resource_type
        if key and key in self.criteria_map:  # the same conditional create twice in one Bundle: one resource
            self._map(entry, self.criteria_map[key])
            return
        if matches:  # nothing to create: the match (200), or 412 for several
            resource = self.resources[entry.index]
            assert resource is not None
            result = await create(self.uow, resource_type, resource, if_none_exist=entry.request.if_none_exist,
                                  matches=matches, structure_checked=True)
            assert result.version is not None
            self._map(entry, f"{resource_type}/{result.version.id}", key)
            self.results[entry.index] = result
            self.resources[entry.index] = None
            return
        resource_id = self.uow.mint_id()
        self.post_ids[entry.index] = resource_id
        self._map(entry, f"{resource_type}/{resource_id}", key)

    def _map(self, entry: BundleEntry, reference: str, key: str | None = None) -> None:
        if entry.full_url:
            self.id_map[entry.full_url] = reference
        if key:
            self.criteria_map[key] = reference

    async def _resolve_put_identity(self, entry: BundleEntry) -> None:
        resource_type, resource_id, criteria = entry.resource_type, entry.request.resource_id, entry.request.query
        if resource_id is not None:
            self._map(entry, f"{resource_type}/{resource_id}")
            return
        key = normalized_criteria(resource_type, criteria)
        if key in self.criteria_map:
            # Criteria an earlier entry already resolved (a conditional create, or another conditional update that
            # creates): the same resource, so this is a second change to it (400 when it is written), never a
            # second resource under criteria that must match one.
            self._resolve_put_to(entry, self.criteria_map[key], key)
            return
        matches = await self.uow.matches(resource_type, criteria)
        if len(matches) > 1:
            raise PreconditionFailed(f"Conditional update '{entry.url}' matches {len(matches)} resources")
        resource = self.resources[entry.index] or {}
        if matches:
            check_matched_id(resource, matches[0]["_id"])
        target = matches[0]["_id"] if matches else resource.get("id") or self.uow.mint_id()
        if not matches:  # like a conditional create: concurrent identical requests conflict on the claim
            self.uow.claim(resource_type, criteria, f"{resource_type}/{target}")
        self._resolve_put_to(entry, f"{resource_type}/{target}", key)

    def _resolve_put_to(self, entry: BundleEntry, reference: str, key: str) -> None:
        target = reference.split("/", 1)[1]
        resource = self.resources[entry.index] or {}
        check_matched_id(resource, target)
        self.resources[entry.index] = {**resource, "id": target}
        self._map(entry, reference, key)

    async def _resolve_conditional_references(self) -> None:
        holder: dict[str, BundleEntry] = {}  # each conditional reference -> the first entry that holds it
        for entry in self.entries:
            if entry.method in ("POST", "PUT"):
                found: set[str] = set()
                collect_references(self.resources[entry.index], found)
                for reference in found:
                    holder.setdefault(reference, entry)
        for reference in sorted(r for r in holder if _is_conditional_reference(r)):
            try:
                await self._resolve_conditional_reference(reference)
            except FhirError as exc:
                raise located(exc, holder[reference]) from exc

    async def _resolve_conditional_reference(self, reference: str) -> None:
        resource_type, _, query = reference.partition("?")
        try:
            require_supported_type(resource_type)
            key = normalized_criteria(resource_type, query)
        except FhirError as exc:
            raise InvalidRequest(f"Invalid conditional reference '{reference}': {exc}", code="invalid") from exc
        if key in self.criteria_map:
            self.conditional_map[reference] = self.criteria_map[key]
            return
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
        waiting: dict[int, BundleEntry] = {}
        for entry in writes:
            await self._guard(entry, self._rewrite(entry, originals[entry.index], waiting))
        for target in self.version_targets.values():
            await self._guard(target, self._promise_version(target))
        for entry in waiting.values():
            await self._guard(entry, self._rewrite(entry, originals[entry.index], {}))

    async def _rewrite(self, entry: BundleEntry, original: dict[str, Any] | None,
                       waiting: dict[int, BundleEntry]) -> None:
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

        rewritten = rewrite_references(original, resolve)
        self.resources[entry.index] = None if rewritten is None else rewrite_links(rewritten, self.id_map)

    def _version_named(self, target: BundleEntry, reference: str, version: str) -> str | None:
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

    async def _promise_version(self, target: BundleEntry) -> None:
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

    async def _create(self, entry: BundleEntry) -> None:
        resource = self.resources[entry.index]
        assert resource is not None
        resource_id = self.post_ids[entry.index]
        self._claim_target(entry, entry.resource_type, resource_id)
        resource = {k: v for k, v in resource.items() if k != "id"}
        self.results[entry.index] = await create(self.uow, entry.resource_type, resource,
                                                 if_none_exist=entry.request.if_none_exist, assigned_id=resource_id,
                                                 matches=[], structure_checked=True)

    async def _put_or_patch(self, entry: BundleEntry) -> None:
        request = entry.request
        if request.interaction is Interaction.PATCH:
            resource_id = request.resource_id or await conditional_patch_target(self.uow, entry.resource_type,
                                                                                request.query)
            self._claim_target(entry, entry.resource_type, resource_id)
            self.results[entry.index] = await patch(self.uow, entry.resource_type, resource_id, request.body,
                                                    if_match=request.if_match, if_none_match=request.if_none_match)
            return
        resource = self.resources[entry.index]
        assert resource is not None
        resource_type, resource_id = self._put_target(entry, resource)
        self._claim_target(entry, resource_type, resource_id)
        self.results[entry.index] = await update(self.uow, resource_type, resource_id, resource,
                                                 if_match=request.if_match, if_none_match=request.if_none_match,
                                                 structure_checked=True)

    async def _get(self, entry: BundleEntry) -> None:
        """A GET entry, seeing the transaction's own writes."""
        self.results[entry.index] = await perform_read(self.uow.ctx, self.uow.services, entry.request,
                                                       session=self.uow.session)
