"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html; http.html#patch): a ``Parameters`` resource whose
``operation`` parameters (parts ``type``, ``path``, ``name``, ``value``, ``index``, ``source``, ``destination``)
are applied in order to the resource.

* ``add``: ``name`` with ``value`` added to the one element ``path`` selects (appended to a repeating element;
  a non-repeating one must not exist yet);
* ``insert``: ``value`` inserted at ``index`` into the list ``path`` names;
* ``delete``: the element ``path`` selects (none: nothing to do; several: an error), and any element left empty;
* ``replace``: the one element ``path`` selects, replaced by ``value``;
* ``move``: within the list ``path`` names, the item at ``source`` moved to ``destination``.

A ``value`` is a ``value[x]`` (any data type) or, for an element of no named type (a backbone element such as
``Patient.contact``), parts named after its elements (fhirpatch.html, "anonymous types").

``path`` is FHIRPath evaluated for the *location* of what it selects, so it is held to the subset whose results
are elements of the resource: the resource type, member steps (choice elements by their name: ``value``),
indexers ``[n]`` and ``where(criteria)``, ``first()``, ``last()`` and ``ofType(Type)``; ``where`` criteria are
any FHIRPath, evaluated by the engine (``fhir_server.fhirpath``). The extensions of a primitive (``_birthDate``
in JSON) are not reachable this way; a patch of them is an update. A path outside the subset is a 400 naming it;
a patch that cannot be applied to this resource (no element, several, an index out of range) a 422. What the
patch makes is then checked as any update is (``interactions/patch.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import InvalidRequest, UnprocessableEntity
from fhir_server.fhirpath import Expression, FhirPathSyntaxError, is_true, parse
from fhir_server.fhirpath.syntax import Node, children, function_name, function_params, identifier
from fhir_server.validation.primitives import RESOURCE, TYPES, Row

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_ROOT = "$"  # the key of the resource in the one-entry holder a root location points into


@dataclass(frozen=True)
class Location:
    """One element of the resource: ``holder[key]`` (the item ``index`` when that is a list); ``row`` says
    what the element is (its type, whether it repeats), None for the resource itself."""

    holder: dict[str, Any]
    key: str
    index: int | None
    row: Row | None
    type_key: str  # the type of the element's value: a key of ``TYPES`` or a primitive type name

    @property
    def value(self) -> Any:
        held = self.holder[self.key]
        return held if self.index is None else held[self.index]

    def same_element(self, other: Location) -> bool:
        return self.holder is other.holder and self.key == other.key


@dataclass(frozen=True)
class Operation:
    type: str
    path: str
    name: str | None
    value: Any  # the JSON value to write; None when not given
    value_type: str | None  # the x of value[x]; None for parts (an anonymous type) or no value
    index: int | None
    source: int | None
    destination: int | None


class FhirPathPatch:
    """A parsed FHIRPath Patch document; :meth:`apply` returns the patched copy of a resource."""

    def __init__(self, operations: list[Operation]) -> None:
        self.operations = operations

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        holder = {_ROOT: copy.deepcopy(resource)}
        for number, operation in enumerate(self.operations):
            try:
                _APPLY[operation.type](holder, operation)
            except _Failed as failed:
                raise UnprocessableEntity(f"FHIRPath Patch operation {number + 1} ({operation.type} "
                                          f"{operation.path}): {failed}", code="processing") from None
        patched: dict[str, Any] = holder[_ROOT]
        return patched


class _Failed(Exception):
    """The operation cannot be applied to this resource."""


# -- parsing the Parameters ----------------------------------------------------------------------------------


def parse_fhirpath_patch(document: Any) -> FhirPathPatch:
    """The operations of a FHIRPath Patch ``Parameters``; a 400 for anything that is not one."""
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        raise InvalidRequest("A FHIRPath Patch is a Parameters resource", code="structure")
    operations = []
    for number, parameter in enumerate(document.get("parameter") or []):
        where = f"Parameters.parameter[{number}]"
        if not isinstance(parameter, dict) or parameter.get("name") != "operation":
            raise InvalidRequest(f"{where}: a FHIRPath Patch holds only 'operation' parameters", code="structure",
                                 expression=(where,))
        operations.append(_operation(parameter.get("part") or [], where))
    return FhirPathPatch(operations)  # none: the resource as it is (FHIR's patch test cases, "No Difference")


def _operation(parts: list[Any], where: str) -> Operation:
    named: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str) or name in named:
            raise InvalidRequest(f"{where}: every part has a name, once", code="structure", expression=(where,))
        named[name] = part
    kind = _primitive(named, "type", "Code", where)
    if kind not in OPERATION_TYPES:
        raise InvalidRequest(f"{where}: type '{kind}' is not one of {', '.join(OPERATION_TYPES)}", code="value",
                             expression=(where,))
    path = _primitive(named, "path", "String", where)
    _check_path(path, where)
    value, value_type = _value(named.get("value"), where)
    operation = Operation(kind, path, _optional(named, "name", "String", where), value, value_type,
                          _integer(named, "index", where), _integer(named, "source", where),
                          _integer(named, "destination", where))
    needed = {"add": ("name", "value"), "insert": ("value", "index"), "replace": ("value",),
              "move": ("source", "destination"), "delete": ()}[kind]
    missing = [part for part in needed if part not in named]
    if missing:
        raise InvalidRequest(f"{where}: {kind} needs {' and '.join(missing)}", code="required", expression=(where,))
    return operation


def _primitive(named: dict[str, dict[str, Any]], name: str, kind: str, where: str) -> str:
    value = _optional(named, name, kind, where)
    if value is None:
        raise InvalidRequest(f"{where}: the operation needs a {name}", code="required", expression=(where,))
    return value


def _optional(named: dict[str, dict[str, Any]], name: str, kind: str, where: str) -> str | None:
    part = named.get(name)
    if part is None:
        return None
    found = [v for k, v in part.items() if k.startswith("value")]
    if len(found) != 1 or not isinstance(found[0], str):
        raise InvalidRequest(f"{where}: {name} is a value{kind}", code="structure", expression=(where,))
    return found[0]


def _integer(named: dict[str, dict[str, Any]], name: str, where: str) -> int | None:
    part = named.get(name)
    if part is None:
        return None
    value = part.get("valueInteger")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(f"{where}: {name} is a valueInteger of 0 or more", code="structure",
                             expression=(where,))
    return value


def _value(part: dict[str, Any] | None, where: str) -> tuple[Any, str | None]:
    """The JSON value of a ``value`` part and its type (None for parts: an anonymous type; ``Resource`` for a
    resource, e.g. one to add to ``contained``)."""
    if part is None:
        return None, None
    if "resource" in part:
        if len(part) != 2:  # name and resource
            raise InvalidRequest(f"{where}: value is a value[x], a resource or parts", code="structure",
                                 expression=(where,))
        return part["resource"], "Resource"
    typed = [(k[len("value"):], v) for k, v in part.items() if k.startswith("value") and len(k) > len("value")]
    if typed and "part" not in part and len(typed) == 1:
        return typed[0][1], typed[0][0]
    if "part" in part and not typed:
        return _anonymous(part["part"], where), None
    raise InvalidRequest(f"{where}: value is a value[x], a resource or parts", code="structure",
                         expression=(where,))


def _anonymous(parts: list[Any], where: str) -> dict[str, Any]:
    """Parts named after elements -> the element's JSON (a repeated name makes a list)."""
    out: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise InvalidRequest(f"{where}: every part of a value has a name", code="structure", expression=(where,))
        value, _ = _value(part, where)  # the element's own name says what it is
        key = part["name"]
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def _check_path(path: str, where: str) -> None:
    try:
        tree = parse(path)
    except FhirPathSyntaxError as exc:
        raise InvalidRequest(f"{where}: path '{path}' is not FHIRPath: {exc}", code="invalid",
                             expression=(where,)) from None
    problem = _outside_subset(tree)
    if problem:
        raise InvalidRequest(f"{where}: path '{path}': {problem} (a FHIRPath Patch path selects elements: member "
                             "steps, [n], where(), first(), last(), ofType())", code="not-supported",
                             expression=(where,))


def _outside_subset(node: Node) -> str | None:
    kind = node.get("type")
    if kind == "TermExpression":
        return None if identifier(node) else f"'{node.get('text', '')}' is not an element name"
    if kind == "IndexerExpression":
        left, index = children(node)
        return _outside_subset(left) or (None if _literal_index(index) is not None else "[n] takes a number")
    if kind == "InvocationExpression":
        left, right = children(node)
        if right.get("type") == "MemberInvocation":
            return _outside_subset(left)
        name = function_name(right)
        if name not in _FUNCTIONS:
            return f"{name}() does not select elements"
        return _outside_subset(left)
    return f"'{node.get('text') or kind}' does not select elements"


def _literal_index(node: Node) -> int | None:
    text = node.get("text") or "".join(n.get("text", "") for n in children(node))
    return int(text) if text.isdigit() else None


# -- locating what a path selects ------------------------------------------------------------------------------


def locate(holder: dict[str, Any], path: str) -> list[Location]:
    """The elements ``path`` selects in the resource ``holder[_ROOT]``, in document order."""
    resource = holder[_ROOT]
    root = Location(holder, _ROOT, None, None, resource.get("resourceType", ""))
    return list(_select(parse(path), root, resource, top=True))


def _select(node: Node, root: Location, resource: dict[str, Any], top: bool = False) -> Iterator[Location]:
    kind = node.get("type")
    if kind == "TermExpression":
        name = identifier(node) or ""
        if top and name == root.type_key:
            yield root
        else:
            yield from _members(root, name)
        return
    if kind == "IndexerExpression":
        left, index = children(node)
        found = list(_select(left, root, resource, top))
        position = _literal_index(index)
        if position is not None and position < len(found):
            yield found[position]
        return
    left, right = children(node)
    found = list(_select(left, root, resource, top))
    if right.get("type") == "MemberInvocation":
        for location in found:
            yield from _members(location, identifier(right) or "")
        return
    yield from _FUNCTIONS[function_name(right) or ""](found, function_params(right), resource)


def _members(location: Location, name: str) -> Iterator[Location]:
    """The element ``name`` of the element at ``location`` (each item of a list); a choice by its name."""
    value = location.value
    if not isinstance(value, dict):
        return
    info = TYPES.get(_type_of(location, value))
    if info is None:
        return
    for key in _json_names(info.rows, name):
        if key not in value:
            continue
        row = info.rows[key]
        if isinstance(value[key], list):
            for index in range(len(value[key])):
                yield Location(value, key, index, row, row.target)
        else:
            yield Location(value, key, None, row, row.target)
        return


def _json_names(rows: dict[str, Row], name: str) -> list[str]:
    if name in rows:
        return [name]
    return [key for key, row in rows.items() if row.choice == name]


def _type_of(location: Location, value: dict[str, Any]) -> str:
    """A resource (the root, or a contained one) is of its resourceType; any other element of its row's type."""
    if location.row is None or location.row.kind == RESOURCE:
        return str(value.get("resourceType", ""))
    return location.type_key


def _where(found: list[Location], params: list[Node], resource: dict[str, Any]) -> Iterator[Location]:
    if len(params) != 1:
        raise _Failed("where() takes one criteria expression")
    criteria = Expression(params[0].get("text") or "", tree=params[0])
    for location in found:
        try:
            matches = is_true(criteria.evaluate(location.value, resource, type_path=location.type_key,
                                                primitive_type=location.type_key))
        except Exception as exc:  # fhirpathpy raises what it meets (a type mismatch...): the patch's fault
            raise _Failed(f"the criteria of where() could not be evaluated: {exc}") from None
        if matches:
            yield location


def _first(found: list[Location], params: list[Node], resource: dict[str, Any]) -> Iterator[Location]:
    yield from found[:1]


def _last(found: list[Location], params: list[Node], resource: dict[str, Any]) -> Iterator[Location]:
    yield from found[-1:]


def _of_type(found: list[Location], params: list[Node], resource: dict[str, Any]) -> Iterator[Location]:
    wanted = identifier(params[0]) if len(params) == 1 else None
    for location in found:
        value = location.value
        actual = value.get("resourceType") if isinstance(value, dict) and "resourceType" in value \
            else location.type_key
        if actual == wanted:
            yield location


_FUNCTIONS = {"where": _where, "first": _first, "last": _last, "ofType": _of_type}


# -- the operations ----------------------------------------------------------------------------------------------


def _one(holder: dict[str, Any], path: str) -> Location:
    found = locate(holder, path)
    if len(found) != 1:
        raise _Failed(f"the path selects {len(found)} elements, not one")
    return found[0]


def _fresh(operation: Operation) -> Any:
    """A copy of the operation's value: the patch may be applied again (a transaction the driver re-runs)."""
    return copy.deepcopy(operation.value)


def _add(holder: dict[str, Any], operation: Operation) -> None:
    target = _one(holder, operation.path)
    value = target.value
    info = TYPES.get(_type_of(target, value)) if isinstance(value, dict) else None
    if info is None:
        raise _Failed("the path does not select an element that has elements")
    name = operation.name or ""
    key = _key_for(info.rows, name, operation.value_type)
    row = info.rows[key]
    if row.is_array:
        value.setdefault(key, []).append(_fresh(operation))
    elif any(k in value for k in _json_names(info.rows, name)):
        raise _Failed(f"{name} already has a value (replace it instead)")
    else:
        value[key] = _fresh(operation)


def _key_for(rows: dict[str, Row], name: str, value_type: str | None) -> str:
    """The JSON name of element ``name`` for a value of ``value_type`` (``value`` + Quantity)."""
    if name in rows:
        return name
    choice = f"{name}{(value_type or '')[:1].upper()}{(value_type or '')[1:]}"
    if rows.get(choice) is not None and rows[choice].choice == name:
        return choice
    raise _Failed(f"'{name}' is not an element here" + (f" of type {value_type}" if value_type else ""))


def _list_of(holder: dict[str, Any], path: str) -> list[Any]:
    """The list ``path`` names (its items' locations share it) or, when it is empty, where it would be."""
    found = locate(holder, path)
    if found:
        first = found[0]
        if first.index is None or any(not first.same_element(other) for other in found):
            raise _Failed("the path does not name one list")
        held: list[Any] = first.holder[first.key]
        return held
    parent_path, _, name = path.rpartition(".")
    if not parent_path or not name.isidentifier():
        raise _Failed("the path selects nothing")
    parent = _one(holder, parent_path)
    info = TYPES.get(_type_of(parent, parent.value)) if isinstance(parent.value, dict) else None
    row = info.rows.get(name) if info is not None else None
    if row is None or not row.is_array:
        raise _Failed(f"'{name}' is not a repeating element")
    created: list[Any] = parent.value.setdefault(name, [])
    return created


def _insert(holder: dict[str, Any], operation: Operation) -> None:
    items = _list_of(holder, operation.path)
    index = operation.index or 0
    if index > len(items):
        raise _Failed(f"index {index} is past the end of the list ({len(items)} items)")
    items.insert(index, _fresh(operation))


def _delete(holder: dict[str, Any], operation: Operation) -> None:
    found = locate(holder, operation.path)
    if not found:
        return  # fhirpatch.html: delete the element "if found"
    if len(found) > 1:
        raise _Failed(f"the path selects {len(found)} elements; only one can be deleted")
    target = found[0]
    if target.key == _ROOT:
        raise _Failed("the resource itself cannot be deleted by a patch")
    if target.index is None:
        del target.holder[target.key]
    else:
        items = target.holder[target.key]
        del items[target.index]
        if not items:
            del target.holder[target.key]  # json.html: no empty arrays
    _drop_emptied(holder[_ROOT])


def _drop_emptied(value: Any) -> bool:
    """Remove the objects and arrays a delete left empty, inner first (``contact.name`` once its only element
    ``text`` is deleted): an element has a value or children (ele-1), and JSON has no empty arrays. A resource
    as stored has none, so only what the delete emptied goes. Returns whether ``value`` itself is now empty."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if isinstance(v, dict | list) and _drop_emptied(v)]:
            del value[key]
        return not value
    if isinstance(value, list):
        value[:] = [item for item in value if not (isinstance(item, dict) and _drop_emptied(item))]
        return not value
    return False


def _replace(holder: dict[str, Any], operation: Operation) -> None:
    target = _one(holder, operation.path)
    if target.key == _ROOT:
        raise _Failed("the resource itself cannot be replaced by a patch (use update)")
    if target.index is None:
        target.holder[target.key] = _fresh(operation)
    else:
        target.holder[target.key][target.index] = _fresh(operation)


def _move(holder: dict[str, Any], operation: Operation) -> None:
    items = _list_of(holder, operation.path)
    source, destination = operation.source or 0, operation.destination or 0
    if source >= len(items) or destination >= len(items):
        raise _Failed(f"source {source} and destination {destination} must be below {len(items)}")
    items.insert(destination, items.pop(source))


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
