"""Terminology operations over a set of CodeSystem, ValueSet and ConceptMap resources.

Pure: build a :class:`Terminology` from resource dicts (the server loads them from storage and rebuilds the
object when a new version is published), then call $lookup, $subsumes, $expand, $validate-code and $translate
equivalents (https://hl7.org/fhir/R4/terminology-service.html). Canonical references may carry ``|version``,
which picks that version (retired or superseded ones included); without it, the *current* version is used:
the highest version among those with status ``active``, else among ``draft``, else among the rest
(https://hl7.org/fhir/R4/references.html#canonical, https://hl7.org/fhir/R4/valueset-definitions.html#ValueSet.status).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fhir_server.json_types import Json
from fhir_server.terminology.codesystem import CodeSystemIndex
from fhir_server.terminology.conceptmap import Match, translate
from fhir_server.terminology.core import KINDS as CORE_KINDS
from fhir_server.terminology.core import CoreTerminology
from fhir_server.terminology.valueset import ExpansionError, Membership, compose_membership, text_match

MAX_EXPANSION = 10_000


@dataclass(frozen=True)
class Lookup:
    """$lookup result."""

    system: str
    code: str
    display: str | None
    definition: str | None
    version: str | None
    designations: tuple[Json, ...]
    properties: tuple[tuple[str, Any], ...]
    parents: tuple[str, ...]
    children: tuple[str, ...]
    abstract: bool


@dataclass(frozen=True)
class CodeValidation:
    """$validate-code result; ``checked`` is False when membership could not be decided (open system)."""

    result: bool
    message: str | None = None
    display: str | None = None
    checked: bool = True


def _version_key(version: str | None) -> tuple[Any, ...]:
    """Natural order of versions: 1.10 after 1.9; a missing version sorts first."""
    if version is None:
        return ()
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-]", version))


_STATUS_RANK = {"active": 2, "draft": 1}


def currency_key(resource: Json) -> tuple[Any, ...]:
    """Order of the versions of one canonical url: the greatest is current (active before draft before
    retired/unknown, then the highest version in natural order)."""
    return (_STATUS_RANK.get(resource.get("status") or "", 0), _version_key(resource.get("version")))


def split_canonical(canonical: str) -> tuple[str, str | None]:
    url, _, version = canonical.partition("|")
    return url, version or None


class Terminology:
    """Indexes CodeSystems, ValueSets and ConceptMaps by canonical url and version."""

    def __init__(self, resources: Iterable[Json], superseded: Iterable[Json] = (),
                 core: CoreTerminology | None = None) -> None:
        """``resources`` are the versions in force; ``superseded`` are earlier versions kept only so that
        ``url|version`` references to them still resolve (they never become current). ``core``: R4's own code
        systems and value sets (``terminology.core``), for the urls no resource here has."""
        self._core = core
        self._by_version: dict[tuple[str, str, str | None], Json] = {}
        self._latest: dict[tuple[str, str], Json] = {}
        for r in resources:
            self.add(r)
        for r in superseded:
            kind, url, version = r.get("resourceType"), r.get("url"), r.get("version")
            if kind in ("CodeSystem", "ValueSet", "ConceptMap") and url and version:
                self._by_version.setdefault((kind, url, version), r)
        self._cs_index: dict[tuple[str, str | None], CodeSystemIndex] = {}
        self._memberships: dict[str, Membership] = {}

    def add(self, resource: Json) -> None:
        """Index one resource (call before first use; indexes are cached)."""
        kind, url, version = resource.get("resourceType"), resource.get("url"), resource.get("version")
        if kind not in ("CodeSystem", "ValueSet", "ConceptMap") or not url:
            return
        self._by_version[(kind, url, version)] = resource
        current = self._latest.get((kind, url))
        if current is None or currency_key(resource) >= currency_key(current):
            self._latest[(kind, url)] = resource

    def resource(self, kind: str, canonical: str) -> Json | None:
        url, version = split_canonical(canonical)
        found = self._latest.get((kind, url)) if version is None else self._by_version.get((kind, url, version))
        if found is None and self._core is not None and kind in CORE_KINDS:
            return self._core.resource(kind, url, version)
        return found

    def code_systems(self) -> dict[str, list[str]]:
        """Every code system this service knows, by url: the versions held of the published ones (an R4 one no
        resource replaces: none listed, as its version is read only when it is used), in url order."""
        held: dict[str, list[str]] = {}
        for kind, url, version in self._by_version:
            if kind == "CodeSystem":
                versions = held.setdefault(url, [])
                if version is not None and version not in versions:
                    versions.append(version)
        for url in self._core.urls("CodeSystem") if self._core is not None else []:
            held.setdefault(url, [])
        return {url: sorted(held[url]) for url in sorted(held)}

    # --- code systems -------------------------------------------------------------------------------------
    def code_system(self, system: str, version: str | None = None) -> CodeSystemIndex | None:
        canonical = f"{system}|{version}" if version else system
        resource = self.resource("CodeSystem", canonical)
        if resource is None:
            return None
        key = (resource["url"], resource.get("version"))
        if key not in self._cs_index:
            self._cs_index[key] = CodeSystemIndex(resource)
        return self._cs_index[key]

    def _require_cs(self, system: str) -> CodeSystemIndex:
        url, version = split_canonical(system)
        cs = self.code_system(url, version)
        if cs is None:
            raise KeyError(f"unknown code system {system}")
        return cs

    def descendants(self, system: str, code: str) -> frozenset[str]:
        """Codes strictly below ``code`` (``:below`` adds ``code`` itself); empty if system/code unknown."""
        cs = self.code_system(*split_canonical(system))
        return cs.descendants(code) if cs else frozenset()

    def ancestors(self, system: str, code: str) -> frozenset[str]:
        """Codes strictly above ``code`` (``:above`` adds ``code`` itself); empty if system/code unknown."""
        cs = self.code_system(*split_canonical(system))
        return cs.ancestors(code) if cs else frozenset()

    def subsumes(self, system: str, a: str, b: str) -> str:
        """$subsumes: equivalent | subsumes | subsumed-by | not-subsumed; KeyError if unknown."""
        return self._require_cs(system).subsumes(a, b)

    def lookup(self, system: str, code: str) -> Lookup | None:
        """$lookup; None when the system or the code is unknown."""
        cs = self.code_system(*split_canonical(system))
        concept = cs.get(code) if cs else None
        if cs is None or concept is None:
            return None
        props = tuple((k, v) for k, values in concept.properties.items() for v in values)
        return Lookup(cs.url, concept.code, concept.display, concept.definition, cs.version,
                      tuple(concept.designations), props, tuple(concept.parents), tuple(concept.children),
                      concept.abstract)

    # --- value sets ---------------------------------------------------------------------------------------
    def membership(self, value_set: str) -> Membership:
        """Evaluated compose of a value set (cached); ExpansionError if unknown or not evaluable."""
        if value_set not in self._memberships:
            vs = self.resource("ValueSet", value_set)
            if vs is None:
                raise ExpansionError(f"unknown value set {value_set}", "not-found")
            self._memberships[value_set] = compose_membership(
                vs, self.code_system, lambda ref: self.resource("ValueSet", ref))
        return self._memberships[value_set]

    def expand(self, value_set: str, filter: str | None = None, count: int | None = None,
               offset: int = 0) -> Json:
        """$expand: the ValueSet with ``expansion`` (total, offset, contains), paged by count/offset."""
        vs = self.resource("ValueSet", value_set)
        membership = self.membership(value_set)
        if membership.open_systems:
            raise ExpansionError("value set includes whole systems not held by the server: "
                                 + ", ".join(sorted(membership.open_systems)), "too-costly")
        entries = text_match(membership.entries.values(), filter)
        if len(entries) > MAX_EXPANSION and count is None:
            raise ExpansionError(f"expansion has {len(entries)} codes; page it with count", "too-costly")
        page = entries[offset:offset + count] if count is not None else entries[offset:]
        # The same expansion has the same identifier in every process (hash() is salted per process).
        digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{value_set}|{filter or ''}")
        expansion: Json = {"identifier": f"urn:uuid:{digest}",
                           "timestamp": "1970-01-01T00:00:00Z", "total": len(entries), "offset": offset}
        params = [{"name": n, "value" + t: v} for n, t, v in
                  (("filter", "String", filter), ("count", "Integer", count)) if v is not None]
        if params:
            expansion["parameter"] = params
        if page:
            expansion["contains"] = [e.to_contains() for e in page]
        assert vs is not None
        out = {k: v for k, v in vs.items() if k not in ("compose", "text", "expansion")}
        out["expansion"] = expansion
        return out

    def validate_code(self, value_set: str, system: str | None, code: str,
                      display: str | None = None) -> CodeValidation:
        """$validate-code against a value set; display mismatches are reported but do not fail."""
        membership = self.membership(value_set)
        if system is None:
            found = [k for k in membership.entries if k[1] == code]
            if len(found) != 1:
                return CodeValidation(False, f"code '{code}' without system: ambiguous or not in {value_set}")
            system = found[0][0]
        known = membership.contains(system, code)
        if known is None:
            return CodeValidation(True, f"{system} is not held by the server; '{code}' was not verified",
                                  checked=False)
        if not known:
            return CodeValidation(False, f"code '{code}' of {system} is not in value set {value_set}")
        entry = membership.entries[(system, code)]
        if display and entry.display and display.lower() != entry.display.lower():
            return CodeValidation(True, f"display '{display}' differs from '{entry.display}'", entry.display)
        return CodeValidation(True, None, entry.display)

    def validate_in_system(self, system: str, code: str) -> CodeValidation:
        """$validate-code against a code system (url or url|version)."""
        cs = self.code_system(*split_canonical(system))
        if cs is None:
            return CodeValidation(True, f"{system} is not held by the server", checked=False)
        concept = cs.get(code)
        if concept is None:
            return CodeValidation(not cs.complete, f"code '{code}' is not defined in {system}")
        return CodeValidation(True, None, concept.display)

    # --- concept maps -------------------------------------------------------------------------------------
    def translate(self, system: str, code: str, target_system: str | None = None,
                  concept_map: str | None = None, reverse: bool = False) -> list[Match]:
        """$translate with every ConceptMap held (or just ``concept_map``)."""
        if concept_map is not None:
            cm = self.resource("ConceptMap", concept_map)
            maps = [cm] if cm is not None else []
        else:
            maps = [r for (kind, _), r in self._latest.items() if kind == "ConceptMap"]
        return [m for cm in maps for m in translate(cm, system, code, target_system, reverse)]
