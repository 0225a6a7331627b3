"""A StructureDefinition snapshot as a tree of element nodes, ready for validation.

https://hl7.org/fhir/R4/elementdefinition.html: each node keeps what the validator checks
(cardinality, types and target profiles, fixed[x]/pattern[x], binding, constraints, slicing and slices). Nodes
that constrain nothing beyond plain R4 are marked ``inert`` so that the validator does not walk them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.json_types import Json
from fhir_server.validation.core import is_base_definition

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
# Core element invariants that the wire-format checks already cover or that are too costly per element.
SKIPPED_CORE_KEYS = frozenset({"ele-1", "dom-3", "dom-4", "dom-5", "dom-6"})


@dataclass(frozen=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    key: str
    severity: str
    human: str
    expression: str


@dataclass(frozen=True)
class Discriminator:
    type: str  # value | pattern | exists | type | profile
    path: str


@dataclass
class ElementNode:
    """One element definition, with its children and slices."""

    id: str
    path: str
    name: str  # last path segment, e.g. ``value[x]``
    min: int
    max: int | None  # None = *
    types: tuple[TypeRef, ...]
    fixed: tuple[str, Any] | None = None  # (json key suffix, value)
    pattern: tuple[str, Any] | None = None
    binding: tuple[str, str] | None = None  # (strength, value set canonical)
    constraints: tuple[Constraint, ...] = ()
    discriminators: tuple[Discriminator, ...] = ()
    slicing_rules: str | None = None  # open | closed | openAtEnd; None = not sliced
    slice_name: str | None = None
    children: list[ElementNode] = field(default_factory=list)
    slices: list[ElementNode] = field(default_factory=list)
    inert: bool = False
    # ``value[x]``: asked for every element of every validated resource, so computed once (issue #14)
    is_choice: bool = field(init=False)
    # the JSON key of a primitive element's id and extensions (``_birthDate``), computed once for the same reason
    shadow_key: str = field(init=False)
    # True when an absence of the element breaks nothing (no minimum, no slice with one): the validator then
    # skips it where the resource does not have it. Set with ``inert`` (``_mark_inert``); False checks everything.
    silent_when_absent: bool = False

    def __post_init__(self) -> None:
        self.is_choice = self.name.endswith("[x]")
        self.shadow_key = "_" + self.name

    def child(self, name: str) -> ElementNode | None:
        for c in self.children:
            if c.name == name or (c.is_choice and name.startswith(c.name[:-3])):
                return c
        return None


def _max(value: str) -> int | None:
    return None if value == "*" else int(value)


def _prefixed(element: Json, prefix: str) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith(prefix) and key != prefix:
            return key[len(prefix):], value
    return None


def _types(element: Json) -> tuple[TypeRef, ...]:
    return tuple(TypeRef(t["code"], tuple(t.get("profile", ())), tuple(t.get("targetProfile", ())))
                 for t in element.get("type", ()))


def _constraints(element: Json, own_source: str, core_invariants: bool) -> tuple[Constraint, ...]:
    out = []
    for c in element.get("constraint", ()):
        expression = c.get("expression")
        if not expression or c["key"] in SKIPPED_CORE_KEYS:
            continue
        # Invariants of the base resources and datatypes (not those of core profiles such as vitalsigns' vs-1).
        if not core_invariants and is_base_definition(c.get("source") or own_source):
            continue
        out.append(Constraint(c["key"], c.get("severity", "error"), c.get("human", ""), expression))
    return tuple(out)


def _node(element: Json, source: str, core_invariants: bool) -> ElementNode:
    binding: Json = element.get("binding") or {}
    checked = binding and binding.get("strength") in ("required", "extensible") and binding.get("valueSet")
    slicing = element.get("slicing")
    return ElementNode(
        id=element["id"], path=element["path"], name=element["path"].rsplit(".", 1)[-1],
        min=element.get("min", 0), max=_max(element.get("max", "*")), types=_types(element),
        fixed=_prefixed(element, "fixed"), pattern=_prefixed(element, "pattern"),
        binding=(binding["strength"], binding["valueSet"]) if checked else None,
        constraints=_constraints(element, source, core_invariants),
        discriminators=tuple(Discriminator(d["type"], d["path"])
                             for d in (slicing or {}).get("discriminator", ())),
        slicing_rules=slicing.get("rules", "open") if slicing else None,
        slice_name=element.get("sliceName"),
    )


def build_tree(sd: Json, is_core_binding: Callable[[str], bool],
               core_invariants: bool = False) -> ElementNode:
    """The root node of ``sd``'s snapshot; ``is_core_binding`` tells bindings the wire checks already do."""
    elements = sd["snapshot"]["element"]
    source = sd.get("url", "")
    nodes: dict[str, ElementNode] = {}
    root: ElementNode | None = None
    for element in elements:
        node = _node(element, source, core_invariants)
        if node.binding and is_core_binding(node.binding[1]) and node.binding[0] == "required":
            node.binding = None
        nodes[node.id] = node
        if root is None:
            root = node
            continue
        parent_id, _, last = node.id.rpartition(".")
        if ":" in last and node.slice_name is not None and last.endswith(":" + node.slice_name):
            sliced = nodes.get(f"{parent_id}.{last.split(':')[0]}" if parent_id else last.split(":")[0])
            if sliced is not None:
                sliced.slices.append(node)
            continue
        parent = nodes.get(parent_id)
        if parent is not None:
            parent.children.append(node)
    if root is None:
        raise ValueError(f"{source} has an empty snapshot")
    _mark_inert(root, is_root=True)
    return root


def _mark_inert(node: ElementNode, is_root: bool = False) -> bool:
    """True when neither the node nor anything below it constrains beyond plain R4."""
    below = [_mark_inert(c) for c in node.children] + [_mark_inert(s) for s in node.slices]
    own = (node.min > 0 or node.max == 0 or node.fixed or node.pattern or node.binding or node.constraints
           or node.slices or node.slicing_rules == "closed"
           or any(t.target_profiles or t.profiles for t in node.types)
           or (node.is_choice and len(node.types) == 1))
    node.inert = not own and all(below) and not is_root
    node.silent_when_absent = node.min == 0 and all(s.min == 0 for s in node.slices)
    return node.inert
