"""ConceptMap translation (https://hl7.org/fhir/R4/conceptmap-operation-translate.html).

Used by the registry to accept the pre-2022 ATC codes of the tyrosine kinase inhibitors (L01XE..) as their
current equivalents (L01EA..), and to map ``ifp-disease-phase`` to SNOMED CT.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.json_types import Json

# Equivalences that say "this is not a usable translation" (concept-map-equivalence).
NEGATIVE = frozenset({"unmatched", "disjoint"})


@dataclass(frozen=True)
class Match:
    """One target of a translation."""

    equivalence: str  # concept-map-equivalence: equivalent, equal, wider, narrower, unmatched...
    system: str | None
    code: str | None
    display: str | None
    source: str  # canonical url of the ConceptMap

    @property
    def usable(self) -> bool:
        return self.equivalence not in NEGATIVE and self.code is not None


def translate(concept_map: Json, system: str, code: str, target_system: str | None = None,
              reverse: bool = False) -> list[Match]:
    """Targets of ``system|code`` in one ConceptMap (sources of it when ``reverse``)."""
    matches: list[Match] = []
    url = concept_map.get("url", "")
    for group in concept_map.get("group", []):
        src, tgt = (group.get("target"), group.get("source")) if reverse else (group.get("source"),
                                                                                 group.get("target"))
        if src != system or (target_system and tgt != target_system):
            continue
        found = _group_matches(group, code, tgt, url, reverse)
        if not found and not reverse:
            found = _unmapped(group, code, tgt, url)
        matches.extend(found)
    return matches


def _group_matches(group: Json, code: str, target: str | None, url: str, reverse: bool) -> list[Match]:
    out: list[Match] = []
    for element in group.get("element", []):
        for t in element.get("target", []):
            equivalence = t.get("equivalence", "equivalent")
            if reverse and t.get("code") == code:
                out.append(Match(equivalence, target, element.get("code"), element.get("display"), url))
            elif not reverse and element.get("code") == code:
                out.append(Match(equivalence, target, t.get("code"), t.get("display"), url))
        if not reverse and element.get("code") == code and not element.get("target"):
            out.append(Match("unmatched", target, None, None, url))
    return out


def _unmapped(group: Json, code: str, target: str | None, url: str) -> list[Match]:
    """``group.unmapped``: what to do with source codes the group does not list."""
    unmapped = group.get("unmapped")
    if not unmapped:
        return []
    mode = unmapped.get("mode")
    if mode == "provided":
        return [Match("equal", target, code, None, url)]
    if mode == "fixed":
        return [Match("equivalent", target, unmapped.get("code"), unmapped.get("display"), url)]
    return []
