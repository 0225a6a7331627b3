"""Path navigation on JSON: member steps, choice elements, and whole paths fused into one loop.

Spec: https://hl7.org/fhirpath/N1/#path-selection (a member step flattens lists and drops absent items) and
https://hl7.org/fhirpath/N1/#paths-and-polymorphic-items (``Observation.value`` selects ``valueQuantity`` or
``valueString``...). When the type of the items is known statically (the expression starts with a resource type,
or the caller names the type of the focus), the JSON keys a step reads are computed once from the R4 model
(:mod:`fhir_server.fhirpath.model`); otherwise the step looks for ``name`` and then for a choice ``name[Type]``
at run time.

Speed: search index extraction evaluates ~40 paths per Observation on every write, most of them plain
navigation (``Observation.code``, ``(Observation.value as Quantity)``). A chain of member steps, with an
optional leading type name and ``ofType(T)`` on a choice element, is run by one :class:`Walk` loop rather than
one closure per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.fhirpath.model import CHOICE_SUFFIXES, child_path, choice_types, element_type

Collection = list[Any]


class Unsupported(Exception):
    """The expression (or this evaluation of it) is outside the native subset: fhirpathpy answers it."""


@dataclass(frozen=True)
class Step:
    """One member step: ``name`` read from items of static path ``parent`` (None: unknown until run time).

    ``keys`` are the JSON keys to read, the first present one wins (the choice ``value[x]`` has one per type);
    None: ``name``, else the first present ``name[Type]`` (items of unknown type). ``guard``: the keys select one
    type of a choice element whose type was unknown statically, and an item that has ``name`` itself is not a
    choice at all, so its type is unknown (the evaluation goes to fhirpathpy)."""

    name: str
    parent: str | None
    keys: tuple[str, ...] | None
    guard: bool = False

    def run(self) -> Callable[[Collection], Collection]:
        """The step as a function from items to items (one specialised closure: it runs on every write)."""
        read = self._read()
        if self.name in PRIMITIVE_CHILDREN:
            return lambda items: read(_no_primitives(items, self.name))
        return read

    def _read(self) -> Callable[[Collection], Collection]:
        keys, name = self.keys, self.name
        if keys is None:
            return lambda items: _dynamic(items, name)
        if self.guard:
            return lambda items: _guarded(items, name, keys[0])
        if len(keys) == 1:
            return _reader(keys[0])
        return lambda items: _first_of(items, keys)


def member_step(parent: str | None, name: str) -> tuple[Step, str | None]:
    """The step reading ``name`` from items of static path ``parent``, and the static path of its results."""
    if parent is None:
        return Step(name, None, None), None
    path = child_path(parent, name)
    choices = choice_types(path)
    if choices:  # which of the types is present is known only at run time
        return Step(name, parent, tuple(name + choice for choice in choices)), None
    return Step(name, parent, (name,)), element_type(path, name)


def of_type_step(step: Step, type_name: str) -> tuple[Step, str | None] | None:
    """``step`` narrowed by ``ofType(type_name)``, when ``step`` reads a choice element; else None.

    The choice's JSON name says its type exactly (``valueUri`` vs ``valueCanonical``; ``valueQuantity`` vs
    ``valueAge``), so ``ofType(uri)`` selects ``sourceUri`` only, as SearchParameter definitions mean it
    (``ConceptMap.source as uri`` beside ``ConceptMap.source as canonical``). Primitive type names compare
    without case (``ofType(dateTime)`` is the choice ``DateTime``)."""
    suffix = type_name[:1].upper() + type_name[1:]
    if step.parent is None:
        if step.keys is not None:
            return None
        return Step(step.name, None, (step.name + suffix,), guard=True), _type_path(type_name)
    path = child_path(step.parent, step.name)
    matching = [c for c in choice_types(path) if c.lower() == type_name.lower()]
    if not matching:
        return None
    key = step.name + matching[0]
    return Step(step.name, step.parent, (key,)), element_type(child_path(step.parent, key), step.name)


def _type_path(type_name: str) -> str | None:
    """A complex type's name is its model path (``Quantity.value``); a primitive has no members."""
    return type_name if type_name[:1].isupper() else None


@dataclass(frozen=True)
class Walk:
    """Navigation only: keep the resources of type ``root`` (if given), then apply ``steps`` in order."""

    root: str | None
    steps: tuple[Step, ...]

    def then(self, step: Step) -> Walk:
        return Walk(self.root, (*self.steps, step))

    def replace_last(self, step: Step) -> Walk:
        return Walk(self.root, (*self.steps[:-1], step))

    def top_keys(self) -> frozenset[str] | None:
        """The keys of the focus that the walk can read (None: not known statically)."""
        if not self.steps or self.steps[0].keys is None or self.steps[0].guard:
            return None
        return frozenset(self.steps[0].keys)

    def run(self) -> Callable[[Any], Collection]:
        """The walk as a function of one focus item."""
        root = self.root
        steps = tuple(step.run() for step in self.steps)

        def walk(focus: Any) -> Collection:
            if root is not None and (not isinstance(focus, dict) or focus.get("resourceType") != root):
                return []
            current = [focus]
            for step in steps:
                current = step(current)
                if not current:
                    break
            return current

        return walk


# The children a FHIR primitive has besides its value (https://hl7.org/fhir/R4/json.html#primitive): in JSON they
# sit in the ``_name`` sibling of the value, out of reach of a step that holds the value alone.
PRIMITIVE_CHILDREN = frozenset({"extension", "id"})


def _no_primitives(items: Collection, name: str) -> Collection:
    """``items``, when none is a primitive value; else Unsupported: ``birthDate.extension`` reads ``_birthDate``,
    which fhirpathpy's nodes keep beside the value."""
    for item in items:
        if not isinstance(item, dict):
            raise Unsupported(f"{name} of a primitive value")
    return items


def _reader(key: str) -> Callable[[Collection], Collection]:
    def read(items: Collection) -> Collection:
        out: Collection = []
        for item in items:
            if isinstance(item, dict):
                _append(out, item.get(key))
        return out

    return read


def _first_of(items: Collection, keys: tuple[str, ...]) -> Collection:
    out: Collection = []
    for item in items:
        if isinstance(item, dict):
            for key in keys:
                value = item.get(key)
                if value is not None:
                    _append(out, value)
                    break
    return out


def _guarded(items: Collection, name: str, key: str) -> Collection:
    out: Collection = []
    for item in items:
        if isinstance(item, dict):
            if name in item:
                raise Unsupported(f"ofType() on {name}, which is not a choice element here")
            _append(out, item.get(key))
    return out


def _dynamic(items: Collection, name: str) -> Collection:
    out: Collection = []
    for item in items:
        if isinstance(item, dict):
            _append(out, item[name] if name in item else _choice(item, name))
    return out


def _choice(item: dict[str, Any], name: str) -> Any:
    """Element ``name[x]`` of an item of unknown type that has no element ``name``: the first ``name[Type]``."""
    size = len(name)
    for key, value in item.items():
        if key.startswith(name) and key[size:] in CHOICE_SUFFIXES:
            return value
    return None


def _append(out: Collection, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list):
        out.extend(v for v in value if v is not None)
    else:
        out.append(value)
