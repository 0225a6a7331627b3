"""The native subset of FHIRPath: a parse tree compiled into Python closures.

Spec: https://hl7.org/fhirpath/N1/ (collections, three-valued logic, singleton evaluation of collections).
The subset is what search parameters, invariants and rule selectors mostly use: navigation (with choice types),
``where``/``exists``/``empty``/``not``/``count``/``first``/``hasValue``/``matches``/``ofType``/``extension``/
``select``/``allTrue``/``allFalse``, comparisons of
numbers, strings and booleans, boolean logic, ``in``/``contains``, unions and ``$this``/``%resource``. Anything
else raises :class:`Unsupported` -- at compile time (a function outside the subset, date literals) or at run
time (comparing a date with a number) -- and the caller evaluates with fhirpathpy instead, so results never depend
on the shortcut.

Each node compiles to a :class:`Compiled`: the closure, the static path of its results when known (the R4
model path or type name, which later member steps use to find their JSON keys), and, for pure navigation, the
:class:`Walk` that runs it as one loop.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.fhirpath.navigation import Collection, Step, Unsupported, Walk, member_step, of_type_step
from fhir_server.fhirpath.syntax import Node, children, function_name, function_params, identifier, operator

Env = dict[str, Any]
Fn = Callable[[Collection, Env], Collection]


@dataclass(frozen=True)
class Compiled:
    run: Fn
    path: str | None = None  # static model path (or type name) of the result items; None: unknown
    walk: Walk | None = None  # set when the node is navigation only (then ``run`` runs the walk on each item)
    uses_env: bool = True  # False: ``run`` never reads the environment ($this, %resource...)


def compile_node(node: Node, path: str | None) -> Compiled:
    """Compile ``node`` evaluated on items of static path ``path`` (None: unknown); raises Unsupported."""
    handler = _HANDLERS.get(node.get("type") or "")
    if handler is None:
        raise Unsupported(node.get("type"))
    return handler(node, path)


def _walk(walk: Walk, path: str | None) -> Compiled:
    one = walk.run()

    def run(focus: Collection, env: Env) -> Collection:
        if len(focus) == 1:
            return one(focus[0])
        return [value for item in focus for value in one(item)]

    return Compiled(run, path, walk, uses_env=False)


def _pure(run: Fn, path: str | None = None) -> Compiled:
    return Compiled(run, path, uses_env=False)


def _first_child(node: Node, path: str | None) -> Compiled:
    return compile_node(children(node)[0], path)


# --- navigation and invocations ------------------------------------------------------------------------------
def _invocation_expression(node: Node, path: str | None) -> Compiled:
    left_node, right_node = children(node)
    left = compile_node(left_node, path)
    kind = right_node["type"]
    if kind == "MemberInvocation":
        step, step_path = member_step(left.path, _member_name(right_node))
        if left.walk is not None:
            return _walk(left.walk.then(step), step_path)
        return _then(left, _walk(Walk(None, (step,)), step_path))
    if kind == "FunctionInvocation":
        if function_name(right_node) == "ofType":
            narrowed = _narrowed(left, _type_param(right_node))
            if narrowed is not None:
                return narrowed
        return _then(left, _function(right_node, left.path))
    raise Unsupported(kind)  # ``X.$this``


def _then(left: Compiled, right: Compiled) -> Compiled:
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        return second(first(focus, env), env)

    return Compiled(run, right.path, uses_env=left.uses_env or right.uses_env)


def _invocation_term(node: Node, path: str | None) -> Compiled:
    invoked = children(node)[0]
    kind = invoked["type"]
    if kind == "MemberInvocation":
        name = _member_name(invoked)
        if name[:1].isupper():  # ``Patient.name``: the type name selects the resources of that type
            return _walk(Walk(name, ()), name)
        step, step_path = member_step(path, name)
        return _walk(Walk(None, (step,)), step_path)
    if kind == "FunctionInvocation":
        return _function(invoked, path)
    if kind == "ThisInvocation":
        return Compiled(lambda focus, env: [env["this"]], path)
    raise Unsupported(kind)


def _member_name(node: Node) -> str:
    name: str = children(node)[0]["text"]
    if name.startswith("`"):
        raise Unsupported("delimited identifier")
    return name


def _type_param(node: Node) -> str:
    params = function_params(node)
    name = identifier(params[0]) if len(params) == 1 else None
    if name is None:
        raise Unsupported("ofType() of a qualified or missing type")
    return name


def _narrowed(left: Compiled, type_name: str) -> Compiled | None:
    """``X.ofType(T)`` when X is navigation ending on a choice element: the walk reads the T variant only."""
    if left.walk is None or not left.walk.steps:
        return None
    last: Step = left.walk.steps[-1]
    narrowed = of_type_step(last, type_name)
    if narrowed is None:
        return None
    step, step_path = narrowed
    return _walk(left.walk.replace_last(step), step_path)


# --- literals, constants, parentheses ------------------------------------------------------------------------
def _literal(node: Node, path: str | None) -> Compiled:
    lit = children(node)[0]
    text: str = lit["text"]
    value: Any
    if lit["type"] == "StringLiteral":
        value = _unescape(text[1:-1])
    elif lit["type"] == "NumberLiteral":
        value = Decimal(text) if "." in text else int(text)
    elif lit["type"] == "BooleanLiteral":
        value = text == "true"
    elif lit["type"] == "NullLiteral":
        return _pure(lambda focus, env: [])
    else:
        raise Unsupported(lit["type"])  # dates, times, quantities: fhirpathpy knows their semantics
    return _pure(lambda focus, env: [value])


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}.get(m.group(1), m.group(1)),
                  text)


def _external(node: Node, path: str | None) -> Compiled:
    name = children(children(node)[0])[0]["text"]
    if name not in ("resource", "rootResource", "context"):
        raise Unsupported(f"%{name}")
    return Compiled(lambda focus, env: [env[name]])


# --- operators ---------------------------------------------------------------------------------------------
def _operands(node: Node, path: str | None) -> tuple[Compiled, Compiled]:
    left, right = (compile_node(c, path) for c in children(node))
    return left, right


def _binary(left: Compiled, right: Compiled, run: Fn) -> Compiled:
    return Compiled(run, None, uses_env=left.uses_env or right.uses_env)


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


def _logic(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    op = operator(node)
    if op not in ("and", "or", "implies"):
        raise Unsupported(op)  # xor
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        a = _boolean(first(focus, env))
        if (op == "and" and a is False) or (op == "or" and a is True):
            return [a]
        if op == "implies" and a is False:
            return [True]
        b = _boolean(second(focus, env))
        result: bool | None
        if op == "and":
            result = False if b is False else (True if a and b else None)
        elif op == "or":
            result = True if b is True else (False if a is False and b is False else None)
        else:  # implies: a is True or None here
            result = True if b is True else (False if a is True and b is False else None)
        return [] if result is None else [result]

    return _binary(left, right, run)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, Decimal, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


def _equality(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    op = operator(node)
    if op not in ("=", "!="):
        raise Unsupported(op)  # ~ and !~ (equivalence)
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        a, b = first(focus, env), second(focus, env)
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

    return _binary(left, right, run)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}


def _inequality(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    compare = _ORDER[operator(node)]
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        a, b = _singleton(first(focus, env)), _singleton(second(focus, env))
        if a is None or b is None:
            return []
        if not _comparable(a, b) or isinstance(a, bool | str):
            raise Unsupported("ordering of non-numbers")  # dates and times need FHIRPath precision rules
        return [compare(a, b)]

    return _binary(left, right, run)


def _membership(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    op = operator(node)
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        a, b = first(focus, env), second(focus, env)
        item, pool = (a, b) if op == "in" else (b, a)
        one = _singleton(item)
        if one is None:
            return []
        return [any(one == p for p in pool)]

    return _binary(left, right, run)


def _union(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        out: Collection = []
        for item in first(focus, env) + second(focus, env):
            if not any(item == o for o in out):
                out.append(item)
        return out

    return _binary(left, right, run)


def _polarity(node: Node, path: str | None) -> Compiled:
    inner = _first_child(node, path)
    sign = operator(node)
    operand = inner.run

    def run(focus: Collection, env: Env) -> Collection:
        value = _singleton(operand(focus, env))
        if value is None:
            return []
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise Unsupported("polarity of a non-number")
        return [-value if sign == "-" else value]

    return Compiled(run, None, uses_env=inner.uses_env)


# --- functions -----------------------------------------------------------------------------------------------
def _function(node: Node, path: str | None) -> Compiled:
    """A function applied to items of static path ``path``; its parameters see the same items (``$this``)."""
    name = function_name(node) or ""
    factory = _FUNCTIONS.get(name)
    if factory is None:
        raise Unsupported(f"{name}()")
    return factory([compile_node(p, path) for p in function_params(node)], path)


def _arity(name: str, params: list[Compiled], allowed: tuple[int, ...]) -> None:
    if len(params) not in allowed:
        raise Unsupported(f"{name}() arity")


def is_true(result: Collection) -> bool:
    return len(result) == 1 and result[0] is True


def _where(params: list[Compiled], path: str | None) -> Compiled:
    _arity("where", params, (1,))
    criteria = params[0].run

    def run(focus: Collection, env: Env) -> Collection:
        return [item for item in focus if is_true(criteria([item], {**env, "this": item}))]

    return Compiled(run, path)


def _exists(params: list[Compiled], path: str | None) -> Compiled:
    _arity("exists", params, (0, 1))
    if params:
        where = _where(params, path).run
        return Compiled(lambda focus, env: [bool(where(focus, env))])
    return _pure(lambda focus, env: [bool(focus)])


def _simple(name: str, fn: Fn, keeps_path: bool = False) -> Callable[[list[Compiled], str | None], Compiled]:
    """A function without parameters; ``keeps_path``: its results are some of its input items."""

    def factory(params: list[Compiled], path: str | None) -> Compiled:
        _arity(name, params, (0,))
        return _pure(fn, path if keeps_path else None)

    return factory


def _not(focus: Collection, env: Env) -> Collection:
    value = _boolean(focus)
    return [] if value is None else [not value]


def _matches(params: list[Compiled], path: str | None) -> Compiled:
    _arity("matches", params, (1,))
    pattern_fn = params[0].run

    def run(focus: Collection, env: Env) -> Collection:
        value = _singleton(focus)
        pattern = _singleton(pattern_fn(focus, env))
        if value is None or pattern is None:
            return []
        if not isinstance(value, str):
            raise Unsupported("matches() on a non-string")
        return [_regex(pattern).search(value) is not None]

    return Compiled(run, None, uses_env=params[0].uses_env)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def _extension(params: list[Compiled], path: str | None) -> Compiled:
    """``extension(url)`` (https://hl7.org/fhir/R4/fhirpath.html#functions): the items' ``extension`` elements
    whose ``url`` is ``url``, i.e. ``extension.where(url = %url)`` (a registry SearchParameter reads
    ``Patient.extension('...prospective-study').value`` from every Patient written)."""
    _arity("extension", params, (1,))
    url_of = params[0].run
    step, step_path = member_step(path, "extension")
    extensions = _walk(Walk(None, (step,)), step_path).run

    def run(focus: Collection, env: Env) -> Collection:
        url = _singleton(url_of(focus, env))
        if not isinstance(url, str):
            raise Unsupported("extension() of a url that is not one string")
        return [item for item in extensions(focus, env) if isinstance(item, dict) and item.get("url") == url]

    return Compiled(run, step_path, uses_env=params[0].uses_env)


def _select(params: list[Compiled], path: str | None) -> Compiled:
    """``select(projection)``: the projection of each item (``$this``: the item), flattened, in order."""
    _arity("select", params, (1,))
    projection = params[0]
    project = projection.run

    def run(focus: Collection, env: Env) -> Collection:
        return [value for item in focus for value in project([item], {**env, "this": item})]

    return Compiled(run, projection.path)


def _all_booleans(name: str, wanted: bool) -> Callable[[list[Compiled], str | None], Compiled]:
    """``allTrue()`` / ``allFalse()``: true when every item is ``wanted`` (an empty collection included)."""

    def all_are(focus: Collection, env: Env) -> Collection:
        if any(not isinstance(item, bool) for item in focus):
            raise Unsupported(f"{name}() of items that are not booleans")
        return [all(item is wanted for item in focus)]

    return _simple(name, all_are)


def _of_type(params: list[Compiled], path: str | None) -> Compiled:
    # Reached when ofType() does not follow navigation to a choice element (see ``_narrowed``): the type of the
    # items is not in the JSON, fhirpathpy resolves it from the model.
    raise Unsupported("ofType() on items of a type known only at run time")


_FUNCTIONS: dict[str, Callable[[list[Compiled], str | None], Compiled]] = {
    "where": _where,
    "exists": _exists,
    "empty": _simple("empty", lambda focus, env: [not focus]),
    "not": _simple("not", _not),
    "count": _simple("count", lambda focus, env: [len(focus)]),
    "first": _simple("first", lambda focus, env: focus[:1], keeps_path=True),
    "hasValue": _simple("hasValue", lambda focus, env: [len(focus) == 1 and not isinstance(focus[0], dict | list)]),
    "matches": _matches,
    "ofType": _of_type,
    "extension": _extension,
    "select": _select,
    "allTrue": _all_booleans("allTrue", True),
    "allFalse": _all_booleans("allFalse", False),
}

_HANDLERS: dict[str, Callable[[Node, str | None], Compiled]] = {
    "TermExpression": _first_child,
    "ParenthesizedTerm": _first_child,
    "InvocationExpression": _invocation_expression,
    "InvocationTerm": _invocation_term,
    "LiteralTerm": _literal,
    "ExternalConstantTerm": _external,
    "AndExpression": _logic,
    "OrExpression": _logic,
    "ImpliesExpression": _logic,
    "EqualityExpression": _equality,
    "InequalityExpression": _inequality,
    "MembershipExpression": _membership,
    "UnionExpression": _union,
    "PolarityExpression": _polarity,
}
