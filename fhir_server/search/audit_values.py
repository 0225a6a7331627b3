"""Search index values of the AuditEvents the server records, without evaluating FHIRPath.

Every interaction records an AuditEvent (``interactions/audit_event.py``), so its ``sp`` is extracted for every
request (a write's in its transaction, a read's by the background writer): FHIRPath evaluation is avoidable work
there (measured on the loaded development machine: the generic extraction, ``extract.py``, took about 1.4 times as
long as this module for the event of a read). The R4 expressions of AuditEvent's parameters
(https://hl7.org/fhir/R4/auditevent.html#search) are plain paths, written out here as Python over the JSON; the
values they select go through the same entry builders and sort keys as the generic extraction, so the entries
are the same (``tests/audit/test_audit_index_values.py`` compares both on every shape of event recorded).

Used only while AuditEvent's parameters in the registry are exactly the R4 ones this module knows (a
SearchParameter added or changed for AuditEvent falls back to the generic extraction), and only for a resource
without the elements the Resource-level parameters read (``meta.profile``/``security``/``tag``/``source``, ``text``,
``contained``), which a recorded event never has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from fhir_server.search.extract import SORT_KEY, dedupe
from fhir_server.search.index_layout import SORT_ASCENDING, SORT_DESCENDING, param_path
from fhir_server.search.param_types import ENTRY_BUILDERS, SORT_KEYS, date, reference
from fhir_server.search.param_types.common import Entry
from fhir_server.search.registry import IndexSpec, SearchParameterRegistry

R4 = "http://hl7.org/fhir/SearchParameter/"
Values = list[tuple[Any, str | None]]  # (element, reference type restriction), as ``expressions.evaluate`` gives


class _Event:
    """An event with its agents and entities listed once (five parameters read the entities: a search's event
    names up to a page of patients)."""

    __slots__ = ("agents", "entities", "resource")

    def __init__(self, resource: Mapping[str, Any]) -> None:
        self.resource = resource
        self.agents = [a for a in resource.get("agent") or () if isinstance(a, dict)]
        self.entities = [e for e in resource.get("entity") or () if isinstance(e, dict)]

    def one(self, key: str) -> Values:
        return [(self.resource[key], None)] if key in self.resource else []

    def source(self, key: str) -> Values:
        source = self.resource.get("source") or {}
        return [(source[key], None)] if key in source else []


_PATIENT: str | None = "Patient"  # the type ``patient``'s references are restricted to
# code -> (R4 definition, the values its expression selects)
PATHS: dict[str, tuple[str, Callable[[_Event], Values]]] = {
    "action": (f"{R4}AuditEvent-action", lambda e: e.one("action")),
    "address": (f"{R4}AuditEvent-address", lambda e: [(a["network"]["address"], None) for a in e.agents
                                                      if "address" in (a.get("network") or {})]),
    "agent-name": (f"{R4}AuditEvent-agent-name", lambda e: [(a["name"], None) for a in e.agents if "name" in a]),
    "altid": (f"{R4}AuditEvent-altid", lambda e: [(a["altId"], None) for a in e.agents if "altId" in a]),
    "entity-name": (f"{R4}AuditEvent-entity-name", lambda e: [(x["name"], None) for x in e.entities if "name" in x]),
    "entity-type": (f"{R4}AuditEvent-entity-type", lambda e: [(x["type"], None) for x in e.entities if "type" in x]),
    "policy": (f"{R4}AuditEvent-policy", lambda e: [(p, None) for a in e.agents for p in a.get("policy") or ()]),
    "site": (f"{R4}AuditEvent-site", lambda e: e.source("site")),
    "agent": (f"{R4}AuditEvent-agent", lambda e: [(a["who"], None) for a in e.agents if "who" in a]),
    "agent-role": (f"{R4}AuditEvent-agent-role",
                   lambda e: [(role, None) for a in e.agents for role in a.get("role") or ()]),
    "date": (f"{R4}AuditEvent-date", lambda e: e.one("recorded")),
    "entity": (f"{R4}AuditEvent-entity", lambda e: [(x["what"], None) for x in e.entities if "what" in x]),
    "entity-role": (f"{R4}AuditEvent-entity-role", lambda e: [(x["role"], None) for x in e.entities if "role" in x]),
    "outcome": (f"{R4}AuditEvent-outcome", lambda e: e.one("outcome")),
    # AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)
    "patient": (f"{R4}AuditEvent-patient",
                lambda e: [(a["who"], _PATIENT) for a in e.agents if "who" in a]
                + [(x["what"], _PATIENT) for x in e.entities if "what" in x]),
    "source": (f"{R4}AuditEvent-source", lambda e: e.source("observer")),
    "subtype": (f"{R4}AuditEvent-subtype", lambda e: [(c, None) for c in e.resource.get("subtype") or ()]),
    "type": (f"{R4}AuditEvent-type", lambda e: e.one("type")),
}
# The AuditEvent collection's search indexes, instead of the wildcard index of the other collections: the trail
# is searched by when, by whom and about which patient or resource (README, "Audit trail"), and every write
# transaction inserts its event, so each index key is paid on every write. The wildcard index held every entry of
# every parameter (126 keys for the event of a 16-entry registry transaction: each entity's reference, type and
# role, the agents' roles...) and its multikey metadata keys made concurrent transactions conflict. The other
# parameters (action, outcome, subtype, entity-type...) are still searched, as conditions checked on the documents
# a date, agent, entity or patient condition selects (or by a scan of the trail when a search names none of them).
# ``patient`` has no index of its own: it is covered by ``entity`` (``COVERING``).
# (The store adds ``lastUpdated``, ``_id``: the trail in the order it was written.)
INDEX_SPECS: tuple[IndexSpec, ...] = (
    [(param_path("date", date.LOW), 1), (param_path("date", date.HIGH), 1)],
    [(reference.path("entity"), 1), ("_id", 1)],
    [(param_path("agent", reference.IDENTIFIER_VALUE), 1), ("_id", 1)],
)

# A parameter whose every entry is also an entry of another, indexed one: a search condition on it is ANDed with
# the same condition on the other (a condition the matching events meet anyway), so that the other's index serves
# it and it needs no index of its own. ``patient`` selects the Patient references among the agents' ``who`` and
# the entities' ``what``; ``entity`` selects every entity's ``what``. The events the server records name a
# patient only as an entity: an agent's ``who`` is a client's identifier or a display, never a Patient
# (``interactions/audit_event.py``; ``tests/audit/test_audit_index_values.py`` checks every recorded shape), and
# nobody else writes AuditEvents (405). The ``patient`` index cost every audited search about 0.45 ms of mongod
# CPU per 100-patient event (``bench/audit_writer.py``, bench/README "The audit trail without its patient
# index"): each patient of the page was one more key.
COVERING: dict[str, str] = {"patient": "entity"}


def covered_by(registry: SearchParameterRegistry, resource_type: str | None, code: str) -> str | None:
    """The indexed parameter that covers ``code`` of ``resource_type`` (see ``COVERING``), or None. Only while the
    registry's AuditEvent parameters are the R4 ones this module knows: a redefined ``patient`` or ``entity``
    could select other values."""
    if resource_type != "AuditEvent" or code not in COVERING or not _known_registry(registry):
        return None
    return COVERING[code]


# Resource-level parameters: what they read is never in a recorded event (checked by ``applies``).
_GENERIC_KEYS = frozenset({"text", "contained"})
_GENERIC_META = frozenset({"profile", "security", "tag", "source"})


def applies(registry: SearchParameterRegistry, event: Mapping[str, Any]) -> bool:
    """Whether :func:`index_values` gives what the generic extraction would for ``event``."""
    if _GENERIC_KEYS & event.keys() or _GENERIC_META & (event.get("meta") or {}).keys():
        return False
    return _known_registry(registry)


def _known_registry(registry: SearchParameterRegistry) -> bool:
    known: bool = registry.derived("audit-paths", "AuditEvent", lambda: _registry_matches(registry))
    return known


def _registry_matches(registry: SearchParameterRegistry) -> bool:
    own = {code: p.url for code, p in registry.for_type("AuditEvent").items()
           if p.indexed and not code.startswith("_")}
    return own == {code: url for code, (url, _) in PATHS.items()}


def index_values(registry: SearchParameterRegistry, event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sp`` of a recorded AuditEvent (``applies`` must hold): ``{code: [entries]}`` plus ``_sort`` keys."""
    params = registry.for_type("AuditEvent")
    sp: dict[str, Any] = {}
    sort: dict[str, Any] = {}
    view = _Event(event)
    for code, (_, select) in PATHS.items():
        values = select(view)
        if not values:
            continue
        entries, key = _entries(params[code].type, values)
        if not entries:
            continue
        sp[code] = entries
        if key is not None:
            sort[code] = key
    if sort:
        sp[SORT_KEY] = sort
    return sp


def _entries(kind: str, values: Values) -> tuple[list[Any], Any]:
    """The entries of a parameter's ``values``, each value's built once: the parts every event repeats are shared
    objects (``audit_event``'s entity ``type``/``role``, its agents), so a search's event of 100 patients has 100
    entity roles that are two objects; a reference's entries come from ``_reference_entries``' memo."""
    if kind == "reference":
        return _reference_param(values)
    builder = ENTRY_BUILDERS[kind]
    seen: set[tuple[int, str | None]] = set()
    built: list[Any] = []
    for value, restriction in values:
        key = (id(value), restriction)  # the values are alive (in the event) for the whole call: ids are unique
        if key in seen:
            continue
        seen.add(key)
        built += builder(value, restriction)
    entries = dedupe(built)
    sort_key = SORT_KEYS.get(kind)
    return entries, (sort_key(entries) if sort_key is not None and entries else None)


def _reference_param(values: Values) -> tuple[list[Any], Any]:
    """``_entries`` of a reference parameter (``entity`` and ``patient`` name every patient of a search's page):
    a plain reference is looked up once per distinct string. Two distinct relative references (``Type/id``, with or
    without ``/_history/n``) never give equal entries, so when every value is one, the content comparison of
    ``dedupe`` is skipped and the sort keys are the smallest and largest ``r`` (strings: ``bounds_sort_key``'s
    order); any other value takes the general way."""
    seen: set[Any] = set()
    built: list[Any] = []
    relative_only = True
    for value, restriction in values:
        plain = _plain_reference(value)
        # a plain reference by its string; any other by identity (alive in the event for the whole call)
        key: Any = (value["reference"] if plain else id(value), restriction)
        if key in seen:
            continue
        seen.add(key)
        found = _reference_entries(*key) if plain else tuple(reference.entries(value, restriction))
        if found:  # (an agent's ``who`` of an identifier only gives no entry of ``patient``)
            relative_only = relative_only and plain and len(found) == 1 and reference.REFERENCE in found[0]
            built += found
    if not built:
        return [], None
    if not relative_only:
        entries = dedupe(built)
        return entries, reference.sort_key(entries)
    refs = [entry[reference.REFERENCE] for entry in built]
    return built, {SORT_ASCENDING: min(refs), SORT_DESCENDING: max(refs)}


def _plain_reference(value: Any) -> bool:
    """A Reference with only a ``reference`` string (every entity's ``what``): its entries depend on that string."""
    return type(value) is dict and len(value) == 1 and type(value.get("reference")) is str


def _reference_entries(reference_string: str, restriction: str | None) -> tuple[Entry, ...]:
    """The entries of ``{"reference": reference_string}`` restricted to ``restriction`` (as ``reference.entries``
    filters them): ``entity`` and ``patient`` name the same references, built once for both."""
    entries = _unrestricted_entries(reference_string)
    if restriction is None:
        return entries
    return tuple(e for e in entries if e.get(reference.TYPE) == restriction)


@lru_cache(maxsize=1 << 15)
def _unrestricted_entries(reference_string: str) -> tuple[Entry, ...]:
    """The entries of ``{"reference": reference_string}``, memoized: the patients of a search's event recur from one
    event to the next. The entries are shared by the documents that carry them and never changed (a document's
    ``sp`` is built once and written)."""
    return tuple(reference.entries(reference_string))


def default_index(resource: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`index_values` under the default registry, for an event that :func:`applies` to the registry of the
    server that recorded it (then the two registries give the same values): the search values the audit writer
    process (``storage/audit_process.py``) extracts; module-level, so that it reaches that process by name."""
    return index_values(_default_registry(), resource)


@lru_cache(maxsize=1)
def _default_registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()

