"""The resource types a canonical element may name (https://hl7.org/fhir/R4/references.html#canonical, the element's
``type.targetProfile`` in the core definitions): ``QuestionnaireResponse.questionnaire`` names a Questionnaire,
``ValueSet.compose.include.valueSet`` a ValueSet, ``meta.profile`` a StructureDefinition.

A canonical is resolved by the url its target declares, so the server can only judge one whose url it knows: the
definitions it holds (R4's own value sets, code systems and StructureDefinitions, and those published to it). One
of them of another type than the element names is an **error** (HL7's validator suite, qr-bad-ref2: a
QuestionnaireResponse answering the value set ``example-extensional``): the reference names something the element
cannot mean. An unknown url, a ``#fragment`` and an element whose targets include any resource are not judged.

It runs on every write, and walks only the elements that can hold such a canonical, directly or below: the table of
them per type is built once from the structure table of ``validation/primitives.py``, as
``validation/reference_targets.py`` builds its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fhir_server.errors import Issue
from fhir_server.validation.core import core_definitions
from fhir_server.validation.primitives import COMPLEX, PRIMITIVE, RESOURCE, TYPES, Row

KindOf = Callable[[str], str | None]  # canonical url -> the resource type the server knows it as, or None

# Extensions are not walked: the core Extension's valueCanonical takes any resource
_NOT_WALKED = frozenset({"Extension"})

# per type key, the elements to visit: (their row, the types their canonicals may name or None to walk through)
Visits = dict[str, tuple[Row, frozenset[str] | None]]


def canonical_target_issues(resource: dict[str, Any], kind_of: KindOf) -> list[Issue]:
    """An error for every canonical of ``resource`` (contained resources and the resources of a Bundle included)
    that names a definition the server knows, of a type its element does not allow."""
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str) and resource_type in _visits():
        _walk(resource, resource_type, resource_type, kind_of, issues)
    return issues


def _walk(obj: dict[str, Any], key: str, path: str, kind_of: KindOf, issues: list[Issue]) -> None:
    visits = _visits()[key]
    for name, value in obj.items():
        visit = visits.get(name)
        if visit is None:
            continue
        row, allowed = visit
        for i, item in enumerate(value) if type(value) is list else ((-1, value),):
            at = f"{path}.{name}" if i < 0 else f"{path}.{name}[{i}]"
            if allowed is not None:
                if type(item) is str:
                    _check(item, allowed, at, kind_of, issues)
            elif type(item) is not dict:
                continue  # a wrong JSON type is the structure check's
            elif row.kind == RESOURCE:
                inner = item.get("resourceType")
                if isinstance(inner, str) and inner in _visits():
                    _walk(item, inner, at, kind_of, issues)
            elif row.target in _visits():
                _walk(item, row.target, at, kind_of, issues)


def _check(canonical: str, allowed: frozenset[str], path: str, kind_of: KindOf, issues: list[Issue]) -> None:
    url = canonical.partition("|")[0]
    if not url or url.startswith("#"):
        return
    kind = kind_of(url)
    if kind is not None and kind not in allowed:
        issues.append(Issue("error", "structure", f"{path}: {url[:200]} is a {kind}, and this element names a "
                            f"{' or '.join(sorted(allowed))}", (path,)))


@functools.cache
def _visits() -> dict[str, Visits]:
    """For each type key whose content can hold a restricted canonical: the elements leading to one (a restricted
    canonical, a complex element of such a type, a resource), by a fixpoint as in ``reference_targets``."""
    targets = _targets_by_path()

    def restricted(key: str, name: str, row: Row) -> frozenset[str] | None:
        if row.kind != PRIMITIVE or row.target != "canonical":
            return None
        return targets.get(f"{key}.{row.choice}[x]" if row.choice else f"{key}.{name}")

    holding = {key for key, info in TYPES.items() if key not in _NOT_WALKED
               and any(restricted(key, name, row) or row.kind == RESOURCE for name, row in info.rows.items())}
    grown = True
    while grown:
        more = {key for key, info in TYPES.items() if key not in holding and key not in _NOT_WALKED
                and any(row.kind == COMPLEX and row.target in holding for row in info.rows.values())}
        holding |= more
        grown = bool(more)
    return {key: {name: (row, restricted(key, name, row)) for name, row in TYPES[key].rows.items()
                  if restricted(key, name, row) or row.kind == RESOURCE
                  or (row.kind == COMPLEX and row.target in holding)}
            for key in holding}


def _targets_by_path() -> dict[str, frozenset[str]]:
    """Element path (``QuestionnaireResponse.questionnaire``, ``Meta.profile``) -> the types its canonical may
    name, for the elements of the core definitions that do not take any resource."""
    table: dict[str, frozenset[str]] = {}
    for definition in core_definitions().values():
        for element in definition.get("snapshot", {}).get("element", ()):
            names = {url.rsplit("/", 1)[-1] for t in element.get("type", ()) if t.get("code") == "canonical"
                     for url in t.get("targetProfile", ())}
            if names and "Resource" not in names:
                table[element["path"]] = frozenset(names)
    return table
