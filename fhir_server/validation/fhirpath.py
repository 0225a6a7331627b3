"""FHIRPath for invariants and rule selectors: a fast native evaluator for a common subset, fhirpathpy for the rest.

fhirpathpy costs 20-400 us per evaluation, which dominated validation (engineering-notes: "keep a validation
benchmark"). The expressions that profiles and rule tables use are mostly navigation, ``where``/``exists``,
comparisons and boolean logic, so :class:`Expression` compiles the fhirpathpy parse tree of such expressions
into Python closures (https://hl7.org/fhir/fhirpath/N1/: collections, three-valued logic, singleton evaluation
of collections). Any construct outside the subset -- at compile time or at run time (e.g. comparing a date with
a number) -- is evaluated by fhirpathpy with the R4 model instead, so results never depend on the shortcut.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse

from fhir_server.validation.primitives import CHECKERS, TYPES

R4_MODEL = models["r4"]
# Suffixes of choice-type JSON names (``valueQuantity``): datatype names and capitalised primitive names.
TYPE_SUFFIXES = frozenset({k for k in TYPES if "." not in k} | {p[:1].upper() + p[1:] for p in CHECKERS})

Collection = list[Any]
Env = dict[str, Any]
Fn = Callable[[Collection, Env], Collection]


class Unsupported(Exception):
    """The expression (or this evaluation) is outside the native subset: use fhirpathpy."""


class Expression:
    """A FHIRPath expression compiled once; ``evaluate`` returns the result collection."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._native: Fn | None = _compile(parse(text)["children"][0])
        except Unsupported:
            self._native = None
        self._slow: Callable[..., Collection] | None = None

    @property
    def native(self) -> bool:
        return self._native is not None

    def evaluate(self, focus: Any, resource: Any, type_path: str | None = None,
                 primitive_type: str | None = None) -> Collection:
        """Evaluate on ``focus`` (an element of ``resource`` or the resource itself); ``type_path`` is the
        element's path (``Observation.component``), which fhirpathpy needs to resolve choice types;
        ``primitive_type`` is the FHIR type of a primitive focus (``dateTime``), which type operators need
        (``$this as dateTime``: a JSON string alone could be any string-based type)."""
        if self._native is not None:
            try:
                return self._native([focus], {"resource": resource, "rootResource": resource,
                                              "context": focus, "this": focus})
            except Unsupported:
                pass
        return self.slow(focus, resource, type_path, primitive_type)

    def slow(self, focus: Any, resource: Any, type_path: str | None = None,
             primitive_type: str | None = None) -> Collection:
        """fhirpathpy's answer (also used by tests to check the native evaluator)."""
        if self._slow is None:
            self._slow = fhirpath_compile(self.text, R4_MODEL)
        target = focus
        if focus is not resource and isinstance(focus, dict) and type_path:
            target = ResourceNode.create_node(focus, type_path)
        elif primitive_type and not isinstance(focus, dict | list):
            target = ResourceNode.create_node(focus, primitive_type)  # a bare type name: a FHIR primitive
        return list(self._slow(target, {"resource": resource, "rootResource": resource}))


@functools.lru_cache(maxsize=4096)
def expression(text: str) -> Expression:
    return Expression(text)


def is_true(result: Collection) -> bool:
    return len(result) == 1 and result[0] is True


# --- compilation of the parse tree -------------------------------------------------------------------------------
def _compile(node: dict[str, Any]) -> Fn:
    kind = node.get("type")
    handler = _HANDLERS.get(kind or "")
    if handler is None:
        raise Unsupported(kind)
    return handler(node)


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("children") or []


def _op(node: dict[str, Any]) -> str:
    return node["terminalNodeText"][0]


def _term(node: dict[str, Any]) -> Fn:
    return _compile(_children(node)[0])


def _invocation_expression(node: dict[str, Any]) -> Fn:
    left_node, right_node = _children(node)
    left = _compile(left_node)
    right = _invocation(right_node, first=False)

    def run(focus: Collection, env: Env) -> Collection:
        return right(left(focus, env), env)

    return run


def _invocation_term(node: dict[str, Any]) -> Fn:
    return _invocation(_children(node)[0], first=True)


def _invocation(node: dict[str, Any], first: bool) -> Fn:
    kind = node["type"]
    if kind == "MemberInvocation":
        return _member(_children(node)[0]["text"], first)
    if kind == "FunctionInvocation":
        return _function(_children(node)[0])
    if kind == "ThisInvocation":
        return lambda focus, env: [env["this"]]
    raise Unsupported(kind)


def _member(name: str, first: bool) -> Fn:
    if name.startswith("`"):
        raise Unsupported("delimited identifier")

    def run(focus: Collection, env: Env) -> Collection:
        out: Collection = []
        for item in focus:
            if not isinstance(item, dict):
                continue
            if first and item.get("resourceType") == name:
                out.append(item)  # ``Patient.name``: the type name selects the resource itself
                continue
            _append(out, _child(item, name))
        return out

    return run


def _child(item: dict[str, Any], name: str) -> Any:
    if name in item:
        return item[name]
    for key, value in item.items():  # choice type: ``value`` -> ``valueQuantity``
        if key.startswith(name) and key[len(name):] in TYPE_SUFFIXES:
            return value
    return None


def _append(out: Collection, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list):
        out.extend(v for v in value if v is not None)
    else:
        out.append(value)


def _literal(node: dict[str, Any]) -> Fn:
    lit = _children(node)[0]
    text: str = lit["text"]
    value: Any
    if lit["type"] == "StringLiteral":
        value = _unescape(text[1:-1])
    elif lit["type"] == "NumberLiteral":
        value = Decimal(text) if "." in text else int(text)
    elif lit["type"] == "BooleanLiteral":
        value = text == "true"
    elif lit["type"] == "NullLiteral":
        return lambda focus, env: []
    else:
        raise Unsupported(lit["type"])  # dates, times, quantities: fhirpathpy knows their semantics
    return lambda focus, env: [value]


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}.get(m.group(1), m.group(1)),
                  text)


def _external(node: dict[str, Any]) -> Fn:
    name = _children(_children(node)[0])[0]["text"]
    if name not in ("resource", "rootResource", "context"):
        raise Unsupported(f"%{name}")
    return lambda focus, env: [env[name]]


def _parenthesized(node: dict[str, Any]) -> Fn:
    return _compile(_children(node)[0])


def _singleton(value: Collection) -> Any:
    if len(value) > 1:
        raise Unsupported("collection with several items where one is expected")
    return value[0] if value else None


def _boolean(value: Collection) -> bool | None:
    """Singleton evaluation of collections for logic: empty = unknown, one non-boolean item = true."""
    item = _singleton(value)
    if item is None:
        return None
    return item if isinstance(item, bool) else True


def _logic(node: dict[str, Any]) -> Fn:
    left, right = (_compile(c) for c in _children(node))
    op = _op(node)
    if op not in ("and", "or", "implies"):
        raise Unsupported(op)  # xor

    def run(focus: Collection, env: Env) -> Collection:
        a = _boolean(left(focus, env))
        if (op == "and" and a is False) or (op == "or" and a is True):
            return [a]
        if op == "implies" and a is False:
            return [True]
        b = _boolean(right(focus, env))
        result: bool | None
        if op == "and":
            result = False if b is False else (True if a and b else None)
        elif op == "or":
            result = True if b is True else (False if a is False and b is False else None)
        else:  # implies: a is True or None here
            result = True if b is True else (False if a is True and b is False else None)
        return [] if result is None else [result]

    return run


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, Decimal, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


def _equality(node: dict[str, Any]) -> Fn:
    left, right = (_compile(c) for c in _children(node))
    op = _op(node)
    if op not in ("=", "!="):
        raise Unsupported(op)  # ~ and !~ (equivalence)

    def run(focus: Collection, env: Env) -> Collection:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        if len(a) != len(b):
            equal = False
        else:
            for x, y in zip(a, b, strict=True):
                if not _comparable(x, y) and not (isinstance(x, dict) and isinstance(y, dict)):
                    raise Unsupported("equality of different types")
            equal = all(x == y for x, y in zip(a, b, strict=True))
        return [equal if op == "=" else not equal]

    return run


def _inequality(node: dict[str, Any]) -> Fn:
    left, right = (_compile(c) for c in _children(node))
    op = _op(node)
    compare = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y,
               ">=": lambda x, y: x >= y}[op]

    def run(focus: Collection, env: Env) -> Collection:
        a, b = _singleton(left(focus, env)), _singleton(right(focus, env))
        if a is None or b is None:
            return []
        if not _comparable(a, b) or isinstance(a, bool | str):
            raise Unsupported("ordering of non-numbers")  # dates and times need FHIRPath precision rules
        return [compare(a, b)]

    return run


def _membership(node: dict[str, Any]) -> Fn:
    left, right = (_compile(c) for c in _children(node))
    op = _op(node)

    def run(focus: Collection, env: Env) -> Collection:
        a, b = left(focus, env), right(focus, env)
        item, pool = (a, b) if op == "in" else (b, a)
        one = _singleton(item)
        if one is None:
            return []
        return [any(one == p for p in pool)]

    return run


def _union(node: dict[str, Any]) -> Fn:
    left, right = (_compile(c) for c in _children(node))

    def run(focus: Collection, env: Env) -> Collection:
        out: Collection = []
        for item in left(focus, env) + right(focus, env):
            if not any(item == o for o in out):
                out.append(item)
        return out

    return run


def _polarity(node: dict[str, Any]) -> Fn:
    inner = _compile(_children(node)[0])
    sign = _op(node)

    def run(focus: Collection, env: Env) -> Collection:
        value = _singleton(inner(focus, env))
        if value is None:
            return []
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise Unsupported("polarity of a non-number")
        return [-value if sign == "-" else value]

    return run


def _function(functn: dict[str, Any]) -> Fn:
    parts = _children(functn)
    name = parts[0]["text"]
    params = [_compile(p) for p in _children(parts[1])] if len(parts) > 1 else []
    factory = _FUNCTIONS.get(name)
    if factory is None:
        raise Unsupported(f"{name}()")
    return factory(params)


def _where(params: list[Fn]) -> Fn:
    if len(params) != 1:
        raise Unsupported("where() arity")
    criteria = params[0]

    def run(focus: Collection, env: Env) -> Collection:
        return [item for item in focus if is_true(criteria([item], {**env, "this": item}))]

    return run


def _exists(params: list[Fn]) -> Fn:
    if len(params) > 1:
        raise Unsupported("exists() arity")
    if params:
        where = _where(params)
        return lambda focus, env: [bool(where(focus, env))]
    return lambda focus, env: [bool(focus)]


def _no_params(name: str, params: list[Fn], fn: Fn) -> Fn:
    if params:
        raise Unsupported(f"{name}() arity")
    return fn


def _not(focus: Collection, env: Env) -> Collection:
    value = _boolean(focus)
    return [] if value is None else [not value]


def _matches(params: list[Fn]) -> Fn:
    if len(params) != 1:
        raise Unsupported("matches() arity")
    pattern_fn = params[0]

    def run(focus: Collection, env: Env) -> Collection:
        value = _singleton(focus)
        pattern = _singleton(pattern_fn(focus, env))
        if value is None or pattern is None:
            return []
        if not isinstance(value, str):
            raise Unsupported("matches() on a non-string")
        return [_regex(pattern).search(value) is not None]

    return run


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


_FUNCTIONS: dict[str, Callable[[list[Fn]], Fn]] = {
    "where": _where,
    "exists": _exists,
    "empty": lambda p: _no_params("empty", p, lambda focus, env: [not focus]),
    "not": lambda p: _no_params("not", p, _not),
    "count": lambda p: _no_params("count", p, lambda focus, env: [len(focus)]),
    "first": lambda p: _no_params("first", p, lambda focus, env: focus[:1]),
    "hasValue": lambda p: _no_params("hasValue", p, lambda focus, env: [
        len(focus) == 1 and not isinstance(focus[0], dict | list)]),
    "matches": _matches,
}

_HANDLERS: dict[str, Callable[[dict[str, Any]], Fn]] = {
    "TermExpression": _term,
    "InvocationExpression": _invocation_expression,
    "InvocationTerm": _invocation_term,
    "LiteralTerm": _literal,
    "ExternalConstantTerm": _external,
    "ParenthesizedTerm": _parenthesized,
    "AndExpression": _logic,
    "OrExpression": _logic,
    "ImpliesExpression": _logic,
    "EqualityExpression": _equality,
    "InequalityExpression": _inequality,
    "MembershipExpression": _membership,
    "UnionExpression": _union,
    "PolarityExpression": _polarity,
}
