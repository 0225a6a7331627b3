"""The native subset of FHIRPath: a parse tree compiled into Python closures.

Spec: https://hl7.org/fhirpath/N1/ (collections, three-valued logic, singleton evaluation of collections).
The subset is what search parameters, rule selectors and the R4 core invariants (the ``constraint`` expressions of
the base StructureDefinitions, checked on every write) mostly use: navigation (with choice types), the functions of
``_FUNCTIONS`` (existence, filtering, subsetting and combining, the string functions, ``iif``/``toInteger``/
``children``/``trace``, and FHIR's ``extension(url)``), comparisons of numbers, strings and booleans, boolean logic
(``xor`` included), ``+``/``-`` on numbers, ``+``/``&`` on strings, ``in``/``contains``, unions, ``$this`` and the
constants ``%resource``/``%rootResource``/``%context``/``%ucum``/``%sct``/``%loinc``/``%vs-*``/``%ext-*``, the
ordering of two dates or dateTimes as the ranges they name (``per-1``'s ``start <= end``, :func:`_date_order`), and
quantity literals and the comparison of two quantities in UCUM units (``rng-2``'s ``low <= high``,
:mod:`.quantities`). Anything else raises :class:`Unsupported` -- at compile time (a function outside the subset,
date literals) or at run time
(comparing a date with a number, a string function on several items, dateTimes that may be equal at different
offsets) -- and the caller evaluates with fhirpathpy instead, so results never depend on the shortcut.

Items are JSON values: a FHIR date, dateTime or time is a JSON string, so where FHIRPath compares them as dates
(equality across offsets or precisions, date arithmetic) the native code refuses rather than compare strings.

Each node compiles to a :class:`Compiled`: the closure, the static path of its results when known (the R4
model path or type name, which later member steps use to find their JSON keys), and, for pure navigation, the
:class:`Walk` that runs it as one loop.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.fhirpath.model import R4_MODEL
from fhir_server.fhirpath.navigation import Collection, Step, Unsupported, Walk, member_step, of_type_step
from fhir_server.fhirpath.quantities import compare as compare_quantities
from fhir_server.fhirpath.quantities import is_quantity, parse_literal
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
        step, step_path = _member_step(left.path, _member_name(right_node))
        if left.walk is not None:
            return _walk(left.walk.then(step), step_path)
        return _then(left, _walk(Walk(None, (step,)), step_path))
    if kind == "FunctionInvocation":
        if function_name(right_node) == "ofType":
            narrowed = _narrowed(left, _type_param(right_node))
            if narrowed is not None:
                return narrowed
        function = _function(right_node, left.path)
        if function_name(right_node) == "trace":
            return left  # trace() returns its input: the left side stays as it is (a walk stays one loop)
        return _then(left, function)
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
        step, step_path = _member_step(path, name)
        return _walk(Walk(None, (step,)), step_path)
    if kind == "FunctionInvocation":
        return _function(invoked, path)
    if kind == "ThisInvocation":
        return Compiled(lambda focus, env: [env["this"]], path)
    raise Unsupported(kind)


# The names of R4's choice elements (``value`` of ``Observation.value[x]``).
_CHOICE_NAMES = frozenset(path.rpartition(".")[2] for path in R4_MODEL["choiceTypePaths"])


def _member_step(parent: str | None, name: str) -> tuple[Step, str | None]:
    """:func:`member_step`, except that on items of unknown type a ``name`` that is a choice element nowhere in R4
    is read at its own key only. Navigation's run-time guess for items of unknown type would take any key
    ``name`` + a choice suffix for a choice ``name[x]``: TestScript's tst-5 reads ``response`` of an assert that
    has ``responseCode`` (``Code`` is a choice suffix) but no ``response``."""
    if parent is None and name not in _CHOICE_NAMES:
        return Step(name, None, (name,)), None
    return member_step(parent, name)


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
    if last.parent is None and last.keys == (last.name,):  # see _member_step: narrowed as navigation narrows it
        last = Step(last.name, None, None)
    narrowed = of_type_step(last, type_name)
    if narrowed is None:
        return None
    step, step_path = narrowed
    return _walk(left.walk.replace_last(step), step_path)


# R4 types with specialisations (Age is a Quantity, code a string, positiveInt an integer, url a uri; every type an
# Element): ``is``/``as`` hold for those too, which the JSON name of a choice (valueAge) does not say.
_SUPERTYPES = frozenset({"Quantity", "string", "integer", "uri", "Element", "BackboneElement", "Resource",
                         "DomainResource"})


def _type_expression(node: Node, path: str | None) -> Compiled:
    """``X is T`` and ``X as T`` (https://hl7.org/fhirpath/N1/#types) where X is navigation to a choice element
    (que-7's ``answer is boolean``, ras-2's ``probability as decimal``): the JSON name of the value says its type.
    Several items are an error (fhirpathpy's to raise); a type with specialisations, or X of a type not known from
    its JSON name, is fhirpathpy's."""
    left_node, type_node = children(node)
    type_name = identifier(type_node)
    if type_name is None or type_name in _SUPERTYPES:
        raise Unsupported(f"{operator(node)} of a qualified type or a type with specialisations")
    left = compile_node(left_node, path)
    narrowed = _narrowed(left, type_name)
    if narrowed is None:
        raise Unsupported(f"{operator(node)} on items whose type is not in their JSON name")
    every, of_type = left.run, narrowed.run

    def one_or_none(focus: Collection, env: Env) -> Collection:
        items = every(focus, env)
        if len(items) > 1:
            raise Unsupported(f"{operator(node)} on several items")
        return items

    if operator(node) == "as":
        return Compiled(lambda focus, env: of_type(focus, env) if one_or_none(focus, env) else [], narrowed.path,
                        uses_env=left.uses_env)
    return Compiled(lambda focus, env: [bool(of_type(focus, env))] if one_or_none(focus, env) else [],
                    uses_env=left.uses_env)


# --- literals, constants, parentheses ------------------------------------------------------------------------
def _literal(node: Node, path: str | None) -> Compiled:
    lit = children(node)[0]
    text: str = lit["text"]
    value: Any
    value_path = None
    if lit["type"] == "StringLiteral":
        value = _unescape(text[1:-1])
    elif lit["type"] == "NumberLiteral":
        value = Decimal(text) if "." in text else int(text)
        value_path = "integer" if isinstance(value, int) else None  # toInteger() returns an Integer as it is
    elif lit["type"] == "BooleanLiteral":
        value = text == "true"
    elif lit["type"] == "NullLiteral":
        return _pure(lambda focus, env: [])
    elif lit["type"] == "QuantityLiteral":
        value = parse_literal(text)
    else:
        raise Unsupported(lit["type"])  # dates and times: fhirpathpy knows their semantics
    return _pure(lambda focus, env: [value], value_path)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) == 5:  # \uXXXX
        return chr(int(code[1:], 16))
    return {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}.get(code, code)


# https://hl7.org/fhirpath/N1/#environment-variables (%ucum) and https://hl7.org/fhir/R4/fhirpath.html#variables
_CONSTANTS = {"ucum": "http://unitsofmeasure.org", "sct": "http://snomed.info/sct", "loinc": "http://loinc.org"}


# R4's own: %vs-[name] and %ext-[name], the URLs of HL7's value set and extension of that id (fhirpath.html#variables)
_CONSTANT_PREFIXES = {"vs-": "http://hl7.org/fhir/ValueSet/", "ext-": "http://hl7.org/fhir/StructureDefinition/"}


def constant_value(name: str) -> str | None:
    """The value of the constant ``%name`` (``ucum``, ``vs-administrative-gender``...); None for another name."""
    if name in _CONSTANTS:
        return _CONSTANTS[name]
    prefix = next((p for p in _CONSTANT_PREFIXES if name.startswith(p) and len(name) > len(p)), None)
    return None if prefix is None else _CONSTANT_PREFIXES[prefix] + name[len(prefix):]


def constant_name(node: Node) -> str:
    """The name of an ``ExternalConstantTerm`` (``%`ext-patient-birthTime``` is delimited: its name is inside)."""
    text: str = children(children(node)[0])[0]["text"]
    return text.strip("`")


def _external(node: Node, path: str | None) -> Compiled:
    name = constant_name(node)
    value = constant_value(name)
    if value is not None:
        return _pure(lambda focus, env: [value])
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
    if op not in ("and", "or", "xor", "implies"):
        raise Unsupported(op)
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
        elif op == "xor":  # no short cut: an empty operand on either side makes the result empty
            result = None if a is None or b is None else a != b
        else:  # implies: a is True or None here
            result = True if b is True else (False if a is True and b is False else None)
        return [] if result is None else [result]

    return _binary(left, right, run)


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, Decimal, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


# A JSON string that may be a FHIR date, dateTime, instant or time (``2012``, ``2012-01-01T10:00:00+01:00``,
# ``10:00:00``): FHIRPath compares and adds those as dates, not as strings.
_DATE_LIKE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?(T|$)|[0-9]{2}:[0-9]{2}")
_DATE_ONLY = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$")


def _equal(x: Any, y: Any) -> bool:
    """Whether ``x = y`` is true for two items (https://hl7.org/fhirpath/N1/#equals); Unsupported where the answer
    needs the FHIR type of the items or may be empty: items of different types, two different strings that may both
    be dateTimes or times (equal at different offsets, or empty at different precisions), a float beside a Decimal.
    Complex values (dicts) are equal when their JSON is (``=`` compares them child by child)."""
    if isinstance(x, bool) or isinstance(y, bool):
        if isinstance(x, bool) and isinstance(y, bool):
            return x is y
    elif isinstance(x, str) and isinstance(y, str):
        if x == y:
            return True
        if _DATE_LIKE.match(x) and _DATE_LIKE.match(y) and \
                not (len(x) == len(y) and _DATE_ONLY.match(x) and _DATE_ONLY.match(y)):
            raise Unsupported("equality of strings that may be dates or times of different precision or offset")
        return False
    elif isinstance(x, int | Decimal | float) and isinstance(y, int | Decimal | float):
        if isinstance(x, float) != isinstance(y, float):
            raise Unsupported("equality of a float and an exact number")  # 0.1 != Decimal('0.1') in Python
        return x == y
    elif is_quantity(x) and is_quantity(y):  # in common units: 1 'g' = 1000 'mg'
        if x == y:  # the same JSON, whatever its units
            return True
        order = compare_quantities(x, y)
        if order is None:
            raise Unsupported("equality of quantities of different kinds")
        return order == 0
    elif isinstance(x, dict) and isinstance(y, dict):
        return x == y
    raise Unsupported("equality of items of different types")


def _member(item: Any, pool: Collection) -> bool:
    return any(_equal(item, other) for other in pool)


def _distinct(items: Collection) -> Collection:
    """The items without repeats (``=``), in the order of their first occurrence."""
    out: Collection = []
    for item in items:
        if not _member(item, out):
            out.append(item)
    return out


# FHIR types whose values FHIRPath compares as dates (a JSON string of another type compares as a string)
_DATE_VALUED = frozenset({"date", "dateTime", "instant"})


def _equality(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    op = operator(node)
    if op not in ("=", "!="):
        raise Unsupported(op)  # ~ and !~ (equivalence)
    first, second = left.run, right.run
    both_dates = left.path in _DATE_VALUED and right.path in _DATE_VALUED

    def run(focus: Collection, env: Env) -> Collection:
        a, b = first(focus, env), second(focus, env)
        if not a or not b:
            return []
        if both_dates and len(a) == len(b) == 1 and isinstance(a[0], str) and isinstance(b[0], str):
            order = _date_order(a[0], b[0], dates=True)  # the same up to the coarser precision: empty (N1)
            return [] if order is None else [(order == 0) == (op == "=")]
        equal = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        return [equal if op == "=" else not equal]

    return _binary(left, right, run)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}


def _inequality(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    compare = _ORDER[operator(node)]
    first, second = left.run, right.run
    both_dates = left.path in _DATE_VALUED and right.path in _DATE_VALUED  # known from the model: per-1's Period

    def run(focus: Collection, env: Env) -> Collection:
        a, b = _singleton(first(focus, env)), _singleton(second(focus, env))
        if a is None or b is None:
            return []
        if isinstance(a, str) and isinstance(b, str):
            order = _date_order(a, b, both_dates)
            return [] if order is None else [compare(order, 0)]
        if is_quantity(a) and is_quantity(b):  # rng-2's low <= high; units of different kinds: empty
            order = compare_quantities(a, b)
            return [] if order is None else [compare(order, 0)]
        if not _comparable(a, b) or isinstance(a, bool):
            raise Unsupported("ordering of items that are not two numbers, nor two dates or dateTimes")
        return [compare(a, b)]

    return _binary(left, right, run)


# A FHIR date, dateTime or instant (datatypes.html#dateTime): year, then month, day, and a time with its offset
_DATE_TIME = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]+)?)?"
                        r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?")


def _date_order(a: str, b: str, dates: bool = False) -> int | None:
    """-1, 0 or 1 as dateTime ``a`` is before, the same as or after ``b``, compared as the ranges they name
    (https://hl7.org/fhirpath/N1/#comparison): one ending before the other starts is before it whatever the
    precisions, two of one precision compare as instants. Two that are the same up to the precision of the less
    precise one (``2012-01`` and ``2012-01-05``) are None (the comparison is empty) when ``dates`` says both are
    FHIR dates or dateTimes; otherwise Unsupported, as a string that looks like a date may be a string (fhirpathpy
    answers). Unsupported too: times, fractional seconds, a time with an offset beside one without."""
    left, right = _date_range(a), _date_range(b)
    if left is None or right is None or left[2] != right[2]:
        raise Unsupported("ordering of strings that are not two dates or dateTimes of comparable zones")
    (a_lo, a_hi, _, a_precision), (b_lo, b_hi, _, b_precision) = left, right
    if a_hi <= b_lo:
        return -1
    if b_hi <= a_lo:
        return 1
    if a_precision == b_precision:
        return 0 if a_lo == b_lo else (-1 if a_lo < b_lo else 1)
    if dates:
        return None  # N1: "the result is empty", the order is unknown at the coarser precision
    raise Unsupported("ordering of dateTimes of different precisions that may be the same")


def _date_range(text: str) -> tuple[datetime, datetime, bool, int] | None:
    """(start, end, has a zone, precision) of the range a date or dateTime names, or None when it is none (a time,
    fractional seconds, an invalid day)."""
    found = _DATE_TIME.fullmatch(text)
    if found is None or found.group(7):
        return None
    year, month, day, hour, minute, second, _fraction, zone = found.groups()
    precision = 1 + sum(g is not None for g in (month, day, hour, second))  # minutes come with the hour
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                         int(second or 0), tzinfo=UTC)
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        start -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return start, _range_end(start, precision), zone is not None, precision


def _range_end(start: datetime, precision: int) -> datetime:
    if precision == 1:
        return start.replace(year=start.year + 1)
    if precision == 2:
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    return start + {3: timedelta(days=1), 4: timedelta(minutes=1), 5: timedelta(seconds=1)}[precision]


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
        return [_member(one, pool)]

    return _binary(left, right, run)


def _union(node: Node, path: str | None) -> Compiled:
    left, right = _operands(node, path)
    first, second = left.run, right.run

    def run(focus: Collection, env: Env) -> Collection:
        return _distinct(first(focus, env) + second(focus, env))

    return _binary(left, right, run)


_INT32 = range(-2**31, 2**31)  # FHIRPath's Integer (https://hl7.org/fhirpath/N1/#integer)


def _number(value: Any) -> bool:
    # floats are left out: JSON numbers are parsed as int or Decimal, and float + Decimal is a TypeError
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _additive(node: Node, path: str | None) -> Compiled:
    """``+`` and ``-`` on two numbers, ``+`` and ``&`` on two strings (https://hl7.org/fhirpath/N1/#math): an empty
    operand makes ``+``/``-`` empty and is '' for ``&``. Dates and quantities (date arithmetic, units) are left to
    fhirpathpy, and so is ``+`` on a string that may be a date (Date + String is not concatenation)."""
    left, right = _operands(node, path)
    op = operator(node)
    if op not in ("+", "-", "&"):
        raise Unsupported(op)
    first, second = left.run, right.run

    def concatenate(focus: Collection, env: Env) -> Collection:
        a, b = _singleton(first(focus, env)), _singleton(second(focus, env))
        a, b = "" if a is None else a, "" if b is None else b
        if not isinstance(a, str) or not isinstance(b, str):
            raise Unsupported("& of a non-string")
        return [a + b]

    def add(focus: Collection, env: Env) -> Collection:
        a, b = _singleton(first(focus, env)), _singleton(second(focus, env))
        if a is None or b is None:
            return []
        if _number(a) and _number(b):
            result = a + b if op == "+" else a - b
            if isinstance(result, int) and result not in _INT32:
                raise Unsupported("integer overflow")
            return [result]
        if op == "+" and isinstance(a, str) and isinstance(b, str) and not _DATE_LIKE.match(a) \
                and not _DATE_LIKE.match(b):
            return [a + b]
        raise Unsupported(f"{op} of items other than two numbers or two strings that cannot be dates")

    return _binary(left, right, concatenate if op == "&" else add)


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
Factory = Callable[[list[Compiled], str | None], Compiled]


def _function(node: Node, path: str | None) -> Compiled:
    """A function applied to items of static path ``path``. Its ``expression`` parameters (``where``'s criteria)
    are evaluated on the input items, so they are compiled for items of ``path``; the parameters of the functions
    of ``_VALUE_PARAMETERS`` are values, see :func:`_argument`."""
    name = function_name(node) or ""
    factory = _FUNCTIONS.get(name)
    if factory is None:
        raise Unsupported(f"{name}()")
    nodes = function_params(node)
    params = [_argument(p) for p in nodes] if name in _VALUE_PARAMETERS else [compile_node(p, path) for p in nodes]
    return factory(params, path)


def _argument(node: Node) -> Compiled:
    """A value argument (``startsWith('#')``, ``intersect(%resource.code.coding)``), evaluated on ``$this`` -- the
    item of the enclosing ``where``/``select``/``all``, else the focus of the evaluation -- and not on the input of
    the function, as fhirpathpy and the HL7 Java engine evaluate it: in ``name.given.first().startsWith(name.family)``
    ``name.family`` is the Patient's. The static path of ``$this`` is not tracked, so its member steps find their
    JSON keys at run time."""
    compiled = compile_node(node, None)
    if node.get("type") == "TermExpression" and children(node)[0].get("type") == "LiteralTerm":
        return compiled  # reads neither the focus nor the environment
    run = compiled.run
    return Compiled(lambda focus, env: run([env["this"]], env))


def _arity(name: str, params: list[Compiled], allowed: tuple[int, ...]) -> None:
    if len(params) not in allowed:
        raise Unsupported(f"{name}() arity")


def is_true(result: Collection) -> bool:
    return len(result) == 1 and result[0] is True


def _criterion(result: Collection) -> bool:
    """Whether the criteria of ``where``/``all``/``iif`` holds: an empty result does not. A result other than one
    boolean is left to fhirpathpy: the spec's singleton evaluation makes one item of another type true (several
    items are an error), while fhirpathpy tests the item's Python truth value."""
    if not result:
        return False
    if len(result) == 1 and isinstance(result[0], bool):
        return result[0]
    raise Unsupported("criteria whose result is not one boolean")


def _where(params: list[Compiled], path: str | None) -> Compiled:
    _arity("where", params, (1,))
    criteria = params[0].run

    def run(focus: Collection, env: Env) -> Collection:
        return [item for item in focus if _criterion(criteria([item], {**env, "this": item}))]

    return Compiled(run, path)


def _exists(params: list[Compiled], path: str | None) -> Compiled:
    _arity("exists", params, (0, 1))
    if params:
        where = _where(params, path).run
        return Compiled(lambda focus, env: [bool(where(focus, env))])
    return _pure(lambda focus, env: [bool(focus)])


def _all(params: list[Compiled], path: str | None) -> Compiled:
    """``all(criteria)``: true when the criteria holds for every item (``$this``: the item), so for no item too."""
    _arity("all", params, (1,))
    criteria = params[0].run

    def run(focus: Collection, env: Env) -> Collection:
        return [all(_criterion(criteria([item], {**env, "this": item})) for item in focus)]

    return Compiled(run)


def _simple(name: str, fn: Fn, keeps_path: bool = False) -> Factory:
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


# --- string functions (https://hl7.org/fhirpath/N1/#string-manipulation) ---------------------------------------
def _text(focus: Collection, name: str) -> str | None:
    """The input of a string function: None when empty (the result is then empty), else its one string; several
    items or an item of another type is an error in the spec (fhirpathpy raises it), so Unsupported. A FHIR date
    is a JSON string here, and a string to fhirpathpy and the HL7 Java engine too."""
    if not focus:
        return None
    if len(focus) > 1 or not isinstance(focus[0], str):
        raise Unsupported(f"{name}() on an input that is not one string")
    return focus[0]


def _value(param: Compiled, focus: Collection, env: Env, kind: type, name: str) -> Any:
    """The value of an argument that must be one ``kind`` (str or int); None when empty, which makes the result
    empty (https://hl7.org/fhirpath/N1/#propagation-of-empty-results-in-expressions); anything else is an error."""
    values = param.run(focus, env)
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not isinstance(value, kind) or isinstance(value, bool):
        raise Unsupported(f"{name}() argument that is not one {kind.__name__}")
    return value


def _string_test(name: str, test: Callable[[str, str], bool]) -> Factory:
    """``startsWith``/``endsWith``/``contains(substring)``: ``test(input, argument)``; true for the argument ''."""

    def factory(params: list[Compiled], path: str | None) -> Compiled:
        _arity(name, params, (1,))
        argument = params[0]

        def run(focus: Collection, env: Env) -> Collection:
            text, other = _text(focus, name), _value(argument, focus, env, str, name)
            return [] if text is None or other is None else [test(text, other)]

        return Compiled(run, None, uses_env=argument.uses_env)

    return factory


def _string_map(name: str, fn: Callable[[str], Any]) -> Factory:
    """``length()``/``upper()``/``lower()``: ``fn`` of the input string."""

    def run(focus: Collection, env: Env) -> Collection:
        text = _text(focus, name)
        return [] if text is None else [fn(text)]

    return _simple(name, run)


def _substring(params: list[Compiled], path: str | None) -> Compiled:
    """``substring(start [, length])``: the characters from ``start`` (0-based), at most ``length`` of them; empty
    when ``start`` lies outside the string."""
    _arity("substring", params, (1, 2))
    start_of = params[0]
    length_of = params[1] if len(params) == 2 else None

    def run(focus: Collection, env: Env) -> Collection:
        text = _text(focus, "substring")
        start = _value(start_of, focus, env, int, "substring")
        length = None if length_of is None else _value(length_of, focus, env, int, "substring")
        if text is None or start is None or not 0 <= start < len(text):
            return []
        if length_of is None:
            return [text[start:]]
        if length is None or length < 0:
            # N1 makes an empty argument give an empty result where fhirpathpy (as FHIRPath 2.0) ignores an empty
            # length; a negative length is not defined (Python's slice would count it from the end)
            raise Unsupported("substring() with an empty or negative length")
        return [text[start:start + length]]

    return Compiled(run, None, uses_env=any(p.uses_env for p in params))


# --- subsetting and combining (https://hl7.org/fhirpath/N1/#subsetting), equality as ``=`` (:func:`_equal`) ----
def _intersect(params: list[Compiled], path: str | None) -> Compiled:
    """``intersect(other)``: the input items that are in ``other``, without repeats, in input order."""
    _arity("intersect", params, (1,))
    other = params[0].run

    def run(focus: Collection, env: Env) -> Collection:
        pool = other(focus, env)
        return _distinct([item for item in focus if _member(item, pool)])

    return Compiled(run, path, uses_env=params[0].uses_env)


def _exclude(params: list[Compiled], path: str | None) -> Compiled:
    """``exclude(other)``: the input items that are not in ``other``, repeats and order kept."""
    _arity("exclude", params, (1,))
    other = params[0].run

    def run(focus: Collection, env: Env) -> Collection:
        pool = other(focus, env)
        return [item for item in focus if not _member(item, pool)]

    return Compiled(run, path, uses_env=params[0].uses_env)


def _combine(params: list[Compiled], path: str | None) -> Compiled:
    """``combine(other)``: the input items, then those of ``other``, repeats kept."""
    _arity("combine", params, (1,))
    other = params[0].run
    return Compiled(lambda focus, env: focus + other(focus, env), None, uses_env=params[0].uses_env)


# --- the rest --------------------------------------------------------------------------------------------------
def _extension(params: list[Compiled], path: str | None) -> Compiled:
    """``extension(url)`` (https://hl7.org/fhir/R4/fhirpath.html#functions): the items' ``extension`` elements
    whose ``url`` is ``url``, i.e. ``extension.where(url = %url)`` (a registry SearchParameter reads
    ``Patient.extension('...prospective-study').value`` from every Patient written)."""
    _arity("extension", params, (1,))
    url_of = params[0].run
    step, step_path = _member_step(path, "extension")
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


def _all_booleans(name: str, wanted: bool) -> Factory:
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


def _iif(params: list[Compiled], path: str | None) -> Compiled:
    """``iif(criterion, true-result [, otherwise-result])``: only the chosen branch is evaluated (the other may be
    an error: that is what iif is for). The expressions see the input, whose one item is ``$this``; N1 does not say
    what ``$this`` is for an empty or longer input, so that is left to fhirpathpy."""
    _arity("iif", params, (2, 3))
    criterion, then = params[0].run, params[1].run
    otherwise = params[2].run if len(params) == 3 else None

    def run(focus: Collection, env: Env) -> Collection:
        if len(focus) != 1:
            raise Unsupported("iif() on an input that is not one item")
        inner = {**env, "this": focus[0]}
        branch = then if _criterion(criterion(focus, inner)) else otherwise
        return [] if branch is None else branch(focus, inner)

    return Compiled(run)


_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_YEAR = re.compile(r"[0-9]{4}")


def _to_integer(params: list[Compiled], path: str | None) -> Compiled:
    """``toInteger()`` (https://hl7.org/fhirpath/N1/#tointeger-integer): a Boolean as 1 or 0, a String in integer
    format as its value, another String as empty, an Integer as it is. A JSON number is an Integer only where the
    static path says so (``5`` may be a FHIR decimal, whose toInteger() is empty), and four digits may be a year
    (a date's toInteger() is empty): those are left to fhirpathpy, as are decimals and complex values."""
    _arity("toInteger", params, (0,))
    integers = path in _INTEGER_TYPES

    def run(focus: Collection, env: Env) -> Collection:
        item = _singleton(focus)
        if item is None:
            return []
        if isinstance(item, bool):
            return [int(item)]
        if isinstance(item, str):
            if not _INTEGER_TEXT.fullmatch(item):
                return []
            if _YEAR.fullmatch(item) or int(item) not in _INT32:
                raise Unsupported("toInteger() of a string that may be a year, or beyond Integer")
            return [int(item)]
        if isinstance(item, int) and integers:
            return [item]
        raise Unsupported("toInteger() of a number of unknown FHIR type, or of a complex value")

    return _pure(run, "integer")


def _children(focus: Collection, env: Env) -> Collection:
    """``children()``: the values of the elements of every item, in JSON order (the spec leaves the order open).
    ``resourceType`` is no element. A ``_name`` key holds the id and extensions of primitive values (their
    children, or an element of its own where the primitive has no value), which the JSON values alone do not
    carry, so an item with one is left to fhirpathpy."""
    out: Collection = []
    for item in focus:
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if key.startswith("_"):
                raise Unsupported("children() of an element with primitive extensions")
            if key == "resourceType" or value is None:
                continue
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            else:
                out.append(value)
    return out


def _trace(params: list[Compiled], path: str | None) -> Compiled:
    """``trace(name [, projection])`` returns its input; the spec's log entry is not written."""
    _arity("trace", params, (1, 2))
    return _pure(lambda focus, env: focus, path)


# Functions whose parameters are values evaluated on $this (:func:`_argument`), not expressions on the input.
_VALUE_PARAMETERS = frozenset({"matches", "extension", "startsWith", "endsWith", "contains", "substring",
                               "intersect", "exclude", "combine"})

_FUNCTIONS: dict[str, Factory] = {
    "where": _where,
    "exists": _exists,
    "all": _all,
    "empty": _simple("empty", lambda focus, env: [not focus]),
    "not": _simple("not", _not),
    "count": _simple("count", lambda focus, env: [len(focus)]),
    "first": _simple("first", lambda focus, env: focus[:1], keeps_path=True),
    "tail": _simple("tail", lambda focus, env: focus[1:], keeps_path=True),
    "hasValue": _simple("hasValue", lambda focus, env: [len(focus) == 1 and not isinstance(focus[0], dict | list)]),
    "distinct": _simple("distinct", lambda focus, env: _distinct(focus), keeps_path=True),
    "isDistinct": _simple("isDistinct", lambda focus, env: [len(_distinct(focus)) == len(focus)]),
    "intersect": _intersect,
    "exclude": _exclude,
    "combine": _combine,
    "matches": _matches,
    "startsWith": _string_test("startsWith", str.startswith),
    "endsWith": _string_test("endsWith", str.endswith),
    "contains": _string_test("contains", lambda text, part: part in text),
    "substring": _substring,
    "length": _string_map("length", len),
    "upper": _string_map("upper", str.upper),
    "lower": _string_map("lower", str.lower),
    "ofType": _of_type,
    "extension": _extension,
    "select": _select,
    "allTrue": _all_booleans("allTrue", True),
    "allFalse": _all_booleans("allFalse", False),
    "iif": _iif,
    "toInteger": _to_integer,
    "children": _simple("children", _children),
    "trace": _trace,
}

_HANDLERS: dict[str, Callable[[Node, str | None], Compiled]] = {
    "TermExpression": _first_child,
    "ParenthesizedTerm": _first_child,
    "InvocationExpression": _invocation_expression,
    "InvocationTerm": _invocation_term,
    "LiteralTerm": _literal,
    "ExternalConstantTerm": _external,
    "AndExpression": _logic,
    "OrExpression": _logic,  # or, xor
    "ImpliesExpression": _logic,
    "EqualityExpression": _equality,
    "InequalityExpression": _inequality,
    "TypeExpression": _type_expression,
    "MembershipExpression": _membership,
    "UnionExpression": _union,
    "AdditiveExpression": _additive,
    "PolarityExpression": _polarity,
}
