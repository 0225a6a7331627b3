"""The invariants of FHIR R4 itself, checked on every resource: the ``constraint`` elements of the base resource and
datatype StructureDefinitions (https://hl7.org/fhir/R4/conformance-rules.html#constraints), such as ``obs-6`` (an
Observation has a value or a dataAbsentReason, not both), ``per-1`` (a Period starts before it ends) or ``ref-1`` (a
``#id`` reference names a contained resource).

A profile's snapshot repeats the base invariants of its elements, but the profile validator leaves them out
(``elements.py``, ``core_invariants=False``): they hold of every resource, profiled or not, so they are checked here,
once, by a walk of the resource along the R4 element table of :mod:`~fhir_server.validation.primitives`. Each object
is checked against the invariants of its type (``Period`` for a Period wherever it is, ``Observation.component`` for
a component) and of the element holding it (``Organization.telecom``'s org-3). The walk skips a subtree whose types
carry no invariant (a CodeableConcept, a HumanName), so a resource costs the invariants it can break.

Not here: ``ele-1`` (no empty element), ``ext-1`` (an extension has a value or extensions) and the narrative's
``txt-1``/``txt-2`` are the wire-format checks' (every extension is walked there anyway); ``dom-6``
("a resource should have narrative") is a best-practice guideline that every registry resource would fail; the
DomainResource rules on contained resources (``dom-2`` to ``dom-5``) are plain Python below, as their FHIRPath
(``descendants()`` of every element) would cost every resource with contained resources a walk through fhirpathpy.
An Attachment's stated ``size`` and ``hash`` are compared with its ``data`` here too (datatypes.html#Attachment).
An invariant that cannot be evaluated on a resource (a FHIRPath corner the engine does not know) is logged once and
not held against the resource: the server's own limits must not refuse valid data.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import Issue
from fhir_server.fhirpath import Expression, expression
from fhir_server.validation.core import core_definitions
from fhir_server.validation.primitives import ABSOLUTE_URI, PRIMITIVE, RESOURCE, TYPES

NOT_HERE = frozenset({"ele-1", "txt-1", "txt-2", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "dom-6"})
# R4 expressions that say something else than their rule, read as R4B/R5 (and HL7's reference validator) correct
# them:
# - que-7 tests ``answer is Boolean``, the System type, which a FHIR ``answerBoolean`` is not, so it refused every
#   valid enableWhen with operator 'exists' (HL7's own Questionnaire-bb among them); R5 reads ``answer is boolean``.
# - que-12's rule is "if there are more than one enableWhen, enableBehavior must be specified", its R4 expression
#   counts from three (``> 2``): two conditions without enableBehavior leave the item's enabling undefined. R4B
#   and R5 count from two.
# - tim-9 tests ``when in (...)``, and ``in`` takes one item on its left: a Timing with two ``when`` and an offset
#   could not be evaluated, so an offset beside ``C`` (at a meal, no offset possible) went unchecked. R5 tests each.
CORRECTED = {"que-7": "operator = 'exists' implies (answer is boolean)",
             "que-12": "enableWhen.count() > 1 implies enableBehavior.exists()",
             "tim-9": "offset.empty() or (when.exists() and "
                      "when.select($this in ('C' | 'CM' | 'CD' | 'CV')).allFalse())"}
SHA1_BYTES = 20
DOMAIN_RESOURCE = "http://hl7.org/fhir/StructureDefinition/DomainResource"
EXTENSIONS = frozenset({"extension", "modifierExtension"})


@dataclass(frozen=True)
class Invariant:
    key: str
    severity: str  # error | warning
    human: str
    text: str  # the FHIRPath
    focus_type: str | None = None  # the type of every focus, when the invariant is a type's (Period for per-1)

    @property
    def compiled(self) -> Expression:
        # compiled for its type, the native subset knows what its elements are: per-1's start and end are
        # dateTimes, ordered as dates (2020-01-15 and 2020-01: empty), not as strings
        return expression(self.text, self.focus_type)


@dataclass(frozen=True)
class InvariantTable:
    by_type: dict[str, tuple[Invariant, ...]]  # type key of the element table -> invariants of its objects
    by_element: dict[tuple[str, str], tuple[Invariant, ...]]  # (type key, element name) -> of its values
    visited: frozenset[str]  # the type keys whose objects hold an invariant, or hold objects that do
    domain_resources: frozenset[str]  # resource types under DomainResource (the dom-* rules)
    canonical_resources: frozenset[str]  # resource types whose ``url`` is "an absolute URI" (ValueSet...)


@functools.cache
def invariant_table() -> InvariantTable:
    """The table, built from the base StructureDefinitions on first use (once per process)."""
    by_path: dict[str, list[Invariant]] = {}
    domain: set[str] = set()
    canonical: set[str] = set()
    for url, definition in core_definitions().items():
        if definition.get("baseDefinition") == DOMAIN_RESOURCE and definition.get("kind") == "resource":
            domain.add(str(definition["type"]))
        for element in definition.get("snapshot", {}).get("element", ()):
            if element["path"] == f"{definition['type']}.url" and "absolute URI" in element.get("definition", ""):
                canonical.add(str(definition["type"]))
            for constraint in element.get("constraint", ()):
                own = (constraint.get("source") or url) == url  # an inherited one is its source's
                if own and constraint["key"] not in NOT_HERE and constraint.get("expression"):
                    key = constraint["key"]
                    path = element["path"]
                    by_path.setdefault(path, []).append(Invariant(
                        key, constraint.get("severity", "error"), constraint.get("human", ""),
                        CORRECTED.get(key, constraint["expression"]), path if path in TYPES else None))
    by_type = {path: tuple(found) for path, found in by_path.items() if path in TYPES}
    by_element: dict[tuple[str, str], tuple[Invariant, ...]] = {}
    for path, found in by_path.items():
        owner, _, name = path.rpartition(".")
        if path in TYPES or owner not in TYPES:
            continue
        name = name.removesuffix("[x]")
        target = _target_of(owner, name)
        on_type = {i.key for i in by_type.get(target or "", ())}  # Extension.extension's ext-1 is Extension's
        kept = tuple(i for i in found if i.key not in on_type)
        if kept:
            by_element[(owner, name)] = kept
    return InvariantTable(by_type, by_element, _visited(by_type, by_element), frozenset(domain),
                          frozenset(canonical))


def _target_of(owner: str, name: str) -> str | None:
    rows = TYPES[owner].rows
    row = rows.get(name) or next((r for r in rows.values() if r.choice == name), None)
    return row.target if row is not None else None


def _visited(by_type: dict[str, Any], by_element: dict[tuple[str, str], Any]) -> frozenset[str]:
    """The type keys worth walking into: those with invariants of their own or of their elements, those holding a
    resource (contained, Bundle entries), and those holding such types; found by fixpoint (types nest).

    Extensions do not count: every element may have one, and an extension may hold a Period or a Reference, so
    counting them would walk every object of every resource. The extensions of a walked object are walked (a
    Patient's, an Observation component's); those inside a datatype that carries no invariant of its own (a
    Coding's, a HumanName's) are not, and neither are invariants inside them."""
    keys = set(by_type) | {owner for owner, _ in by_element}
    keys |= {key for key, info in TYPES.items() if any(r.kind == RESOURCE for r in info.rows.values())}
    changed = True
    while changed:
        changed = False
        for key, info in TYPES.items():
            if key not in keys and any(r.kind != PRIMITIVE and r.target in keys and name not in EXTENSIONS
                                       for name, r in info.rows.items()):
                keys.add(key)
                changed = True
    return frozenset(keys)


def core_invariant_issues(resource: dict[str, Any]) -> list[Issue]:
    """The broken invariants of ``resource`` (a resource whose wire format is already checked), errors and
    warnings, each at the FHIRPath of the object that breaks it."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in TYPES:
        return []
    table = invariant_table()
    issues: list[Issue] = []
    _check_resource(resource, rtype, rtype, resource, table, issues)
    return issues


def _check_resource(resource: dict[str, Any], rtype: str, path: str, root: dict[str, Any], table: InvariantTable,
                    issues: list[Issue]) -> None:
    if rtype in table.domain_resources and "contained" in resource:
        issues.extend(_contained_issues(resource, path))
    _visit(resource, rtype, path, resource, root, table, issues)


def _visit(obj: dict[str, Any], key: str, path: str, resource: dict[str, Any], root: dict[str, Any],
           table: InvariantTable, issues: list[Issue]) -> None:
    """Check ``obj`` (of type ``key``) and walk into its elements."""
    for invariant in table.by_type.get(key, ()):
        _check(invariant, obj, key, path, resource, root, issues)
    if key == "Attachment" and "data" in obj:
        issues.extend(_attachment_issues(obj, path))
    elif key in table.canonical_resources:
        issues.extend(_canonical_url_issues(obj, key, path))
    info = TYPES[key]
    for name, value in obj.items():
        row = info.rows.get(name)
        if row is None:
            continue
        element = table.by_element.get((key, row.choice or name))
        if element is None and (row.kind == PRIMITIVE or (row.kind != RESOURCE and row.target not in table.visited)):
            continue
        for item, at in _items(value, f"{path}.{name}"):
            for invariant in element or ():
                _check(invariant, item, f"{key}.{row.choice or name}", at, resource, root, issues)
            if not isinstance(item, dict):
                continue
            if row.kind == RESOURCE:
                inner = item.get("resourceType")
                if not isinstance(inner, str) or inner not in TYPES:
                    continue
                if name == "contained":  # its %rootResource is the container
                    _visit(item, inner, at, item, root, table, issues)
                else:  # a Bundle entry's or a parameter's resource is a resource of its own
                    _check_resource(item, inner, at, item, table, issues)
            elif row.target in table.visited:
                _visit(item, row.target, at, resource, root, table, issues)


def _items(value: Any, path: str) -> Iterator[tuple[Any, str]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if item is not None:
                yield item, f"{path}[{index}]"
    elif value is not None:
        yield value, path


def _check(invariant: Invariant, focus: Any, type_path: str, path: str, resource: dict[str, Any],
           root: dict[str, Any], issues: list[Issue]) -> None:
    compiled = invariant.compiled
    try:
        result = compiled.evaluate(focus, resource, type_path, root=root)
    except Exception as error:  # the engine's limit, not the resource's fault: never a refusal, never a 500
        compiled.log_failure(error, path, "the invariant was not checked")
        return
    if result and not all(item is True for item in result):
        severity = "error" if invariant.severity == "error" else "warning"
        issues.append(Issue(severity, "invariant", f"{path}: {invariant.key}: {invariant.human}", (path,)))


def _contained_issues(resource: dict[str, Any], path: str) -> list[Issue]:
    """dom-2 to dom-5 (DomainResource): a contained resource contains none, carries no version, update time or
    security label, and is referred to from elsewhere in the resource (``#id``) or refers to its container
    (``#``). Any string of the resource equal to ``#id`` counts as the reference (the rule's reference, canonical,
    uri and url elements, and nothing else holds such a string)."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []
    strings = set(_strings(resource))
    issues: list[Issue] = []
    for index, item in enumerate(contained):
        if not isinstance(item, dict):
            continue
        at = f"{path}.contained[{index}]"
        found = item.get("meta")
        meta: dict[str, Any] = found if isinstance(found, dict) else {}
        if "contained" in item:
            issues.append(_error("dom-2", "a contained resource SHALL NOT contain additional contained resources",
                                 f"{at}.contained"))
        if "versionId" in meta or "lastUpdated" in meta:
            issues.append(_error("dom-4", "a contained resource SHALL NOT have a meta.versionId or a "
                                 "meta.lastUpdated", f"{at}.meta"))
        if "security" in meta:
            issues.append(_error("dom-5", "a contained resource SHALL NOT have a security label", f"{at}.meta"))
        ident = item.get("id")
        if not (isinstance(ident, str) and f"#{ident}" in strings) and "#" not in set(_strings(item)):
            issues.append(_error("dom-3", "a contained resource SHALL be referred to from elsewhere in the resource "
                                 "or SHALL refer to the containing resource", at))
    return issues


def _attachment_issues(attachment: dict[str, Any], path: str) -> list[Issue]:
    """An Attachment's ``size`` and ``hash`` describe its ``data`` (datatypes.html#Attachment: "the number of bytes
    of data that make up this attachment (before base64 encoding)", "the calculated hash of the data using SHA-1,
    represented using base64"): stated beside the data, they must be its own, or a receiver checking the content
    against them would refuse it."""
    data, size, digest = attachment.get("data"), attachment.get("size"), attachment.get("hash")
    if not isinstance(data, str) or (size is None and digest is None):
        return []
    content = _base64(data)
    if content is None:  # not base64: the wire-format check says so
        return []
    issues: list[Issue] = []
    if type(size) is int and size != len(content):
        issues.append(Issue("error", "value", f"{path}.size: the stated size {size} is not the size of the data "
                            f"({len(content)} bytes)", (f"{path}.size",)))
    stated = _base64(digest) if isinstance(digest, str) else None
    if stated is None or len(stated) != SHA1_BYTES:
        # HL7's own DiagnosticReport-example-pgx states its hash in hex: not a base64 SHA-1, so nothing to compare
        if digest is not None:
            issues.append(Issue("warning", "value", f"{path}.hash: not the base64 of a SHA-1 digest (20 bytes)",
                                (f"{path}.hash",)))
    elif stated != hashlib.sha1(content, usedforsecurity=False).digest():
        issues.append(Issue("error", "value", f"{path}.hash: the stated hash is not the SHA-1 of the data",
                            (f"{path}.hash",)))
    return issues


def _canonical_url_issues(resource: dict[str, Any], rtype: str, path: str) -> list[Issue]:
    """valueset.html#ValueSet.url, and every canonical resource's: "An absolute URI that is used to identify this
    value set when it is referenced": a relative one ("ValueSet/x", a contained "c1") identifies nothing."""
    url = resource.get("url")
    if not isinstance(url, str) or not url or ABSOLUTE_URI.match(url):
        return []
    return [Issue("error", "value", f"{path}.url: the canonical URL of a {rtype} must be an absolute URI, not "
                  f"'{url[:200]}'", (f"{path}.url",))]


def _base64(text: str) -> bytes | None:
    try:  # R4's base64Binary allows whitespace between the groups of four
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _error(key: str, human: str, path: str) -> Issue:
    return Issue("error", "invariant", f"{path}: {key}: {human}", (path,))
