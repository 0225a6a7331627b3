"""Parse a FHIR search query string into a :class:`~fhir_server.search.model.ParsedSearch`.

Spec: https://hl7.org/fhir/R4/search.html — parameter types (#ptypes), modifiers (#modifiers), prefixes
(#prefix), escaping (#escaping), chaining (#chaining), reverse chaining (#has), result parameters (#return),
unknown parameters and ``handling`` (#errors): lenient ignores them (reported in ``ParsedSearch.ignored``),
strict rejects them. Invalid values are always rejected with ``InvalidRequest`` (HTTP 400).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from fhir_server.errors import InvalidRequest
from fhir_server.search.filter_param import filter_clause
from fhir_server.search.model import (
    PREFIXES,
    Clause,
    CompositeValue,
    DateValue,
    FilterClause,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    ParsedSearch,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TerminologyRequest,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.search.param_types import MODIFIERS
from fhir_server.search.registry import SearchParam, SearchParameterRegistry
from fhir_server.search.values import parse_date_range, parse_decimal, precision_bounds

IGNORED_SILENTLY = frozenset({"_format", "_pretty"})
SUMMARY_VALUES = frozenset({"true", "false", "text", "data", "count"})
TOTAL_VALUES = frozenset({"none", "estimate", "accurate"})
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_CHAIN_DEPTH = 4


def invalid(diagnostics: str, code: str = "invalid") -> InvalidRequest:
    return InvalidRequest(diagnostics, code=code)


# -- escaping --------------------------------------------------------------------------------------

def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` not preceded by a backslash; escapes are kept (search.html#escaping)."""
    if "\\" not in text:  # the common case (every conditional create's criteria): no escape to honour
        return text.split(separator)
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        ch = text[index]
        if ch == "\\" and index + 1 < len(text):
            current.append(text[index:index + 2])
            index += 2
            continue
        if ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\([\\,$|])", r"\1", text)


# -- entry point -----------------------------------------------------------------------------------

class _Context:
    def __init__(self, registry: SearchParameterRegistry, strict: bool, base_url: str | None,
                 now: datetime, max_count: int | None) -> None:
        self.registry = registry
        self.strict = strict
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.now = now
        self.max_count = max_count
        self.ignored: list[tuple[str, str]] = []
        self.within: str | None = None  # the parameter whose value is being read as parameters (_filter)

    def unknown(self, name: str, reason: str) -> None:
        if self.within is not None:
            raise invalid(f"{self.within}: {reason}", "not-supported")
        if self.strict:
            raise invalid(f"Unknown or unsupported search parameter {name!r}: {reason}", "not-supported")
        self.ignored.append((name, reason))


def parse_search(registry: SearchParameterRegistry, resource_type: str | None,
                 params: Iterable[tuple[str, str]], *, strict: bool, base_url: str | None = None,
                 now: datetime | None = None, max_count: int | None = None) -> ParsedSearch:
    """Parse ``params`` (decoded query pairs, in order) for a type search, or a system search if no type."""
    ctx = _Context(registry, strict, base_url, now or datetime.now(UTC), max_count)
    pairs = list(params)
    types = _parse_types(ctx, resource_type, pairs)
    search_types = (resource_type,) if resource_type else types
    result = ResultParameters()
    clauses: list[Clause | HasClause | FilterClause] = []
    for name, value in pairs:
        if name in IGNORED_SILENTLY or name == "_type":
            continue
        if name == "_filter":
            clauses.append(_parse_filter(ctx, resource_type, search_types, value))
            continue
        if name.startswith("_") and _result_parameter(ctx, resource_type, search_types, name, value, result):
            continue
        clause = _parse_clause(ctx, resource_type, search_types, name, value)
        if clause is not None:
            clauses.append(clause)
    return ParsedSearch(
        resource_type=resource_type, clauses=tuple(clauses), types=types, sort=result.sort, count=result.count,
        total=result.total, summary=result.summary, elements=result.elements, includes=result.includes,
        ignored=tuple(ctx.ignored), now=ctx.now,
    )


def _parse_filter(ctx: _Context, resource_type: str | None, search_types: tuple[str, ...],
                  value: str) -> FilterClause:
    """``_filter`` (search_filter.html): its tests read as plain parameters are, an unknown one a 400 whatever
    the handling (``filter_param``)."""
    inner = copy.copy(ctx)
    inner.within = "_filter"
    return filter_clause(value, lambda name, raw: _parse_clause(inner, resource_type, search_types, name, raw))


def _parse_types(ctx: _Context, resource_type: str | None, pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    values = [v for k, v in pairs if k == "_type"]
    if not values:
        return ()
    if resource_type is not None:
        ctx.unknown("_type", "only allowed in a system search")
        return ()
    types = tuple(t.strip() for v in values for t in v.split(",") if t.strip())
    for item in types:
        if not _TYPE_NAME.match(item):
            raise invalid(f"_type: {item!r} is not a resource type")
    return types


# -- result parameters -----------------------------------------------------------------------------

@dataclass
class ResultParameters:
    """The result parameters read so far (search.html#return): repeated ``_sort`` and ``_include`` add up,
    the others keep their last value."""

    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    total: str | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    includes: tuple[Include, ...] = ()


def _result_parameter(ctx: _Context, resource_type: str | None, search_types: tuple[str, ...], name: str,
                      value: str, result: ResultParameters) -> bool:
    base, _, modifier = name.partition(":")
    if base == "_sort":
        result.sort += _parse_sort(ctx, search_types, value)
    elif base == "_count":
        result.count = _parse_count(ctx, value)
    elif base == "_total":
        result.total = _choice("_total", value, TOTAL_VALUES)
    elif base == "_summary":
        result.summary = _choice("_summary", value, SUMMARY_VALUES)
    elif base == "_elements":
        result.elements = element_names(value)
    elif base in ("_include", "_revinclude"):
        include = _parse_include(ctx, resource_type, base == "_revinclude", modifier, value)
        if include is not None:
            result.includes += (include,)
    elif base in ("_contained", "_containedType"):
        ctx.unknown(name, "contained resources are not searched")
    else:
        return False
    return True


def element_names(value: str) -> tuple[str, ...]:
    """The element names of an ``_elements`` value (search.html#elements), for a search or a read."""
    return tuple(e.strip() for e in value.split(",") if e.strip())


def _choice(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise invalid(f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}")
    return value


def _parse_count(ctx: _Context, value: str) -> int:
    if not value.isdigit():
        raise invalid(f"_count: {value!r} is not a non-negative integer")
    count = int(value)
    return min(count, ctx.max_count) if ctx.max_count is not None else count


def _parse_sort(ctx: _Context, search_types: tuple[str, ...], value: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        descending = item.startswith("-")
        code = item.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, descending))
            continue
        param = _common_param(ctx, search_types, code)
        if param is None or param.type in ("composite", "special") or not param.indexed:
            ctx.unknown(f"_sort={item}", "not a sortable search parameter")
            continue
        keys.append(SortKey(code, descending, param))
    return tuple(keys)


def _parse_include(ctx: _Context, resource_type: str | None, reverse: bool, modifier: str,
                   value: str) -> Include | None:
    name = "_revinclude" if reverse else "_include"
    if modifier not in ("", "iterate", "recurse"):
        raise invalid(f"{name}: unknown modifier {modifier!r}", "not-supported")
    iterate = modifier in ("iterate", "recurse")
    if value == "*":
        if reverse:  # every reference parameter of every type (expanded by the executor)
            return Include("*", "*", None, iterate, reverse)
        if resource_type is None:
            ctx.unknown(f"{name}=*", "needs a resource type")
            return None
        return Include(resource_type, "*", None, iterate, reverse)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not _TYPE_NAME.match(parts[0]):
        raise invalid(f"{name}: {value!r} is not Source:param[:Target]")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not reverse and not iterate and resource_type is not None and source != resource_type:
        ctx.unknown(f"{name}={value}", f"source type {source!r} is not the searched type {resource_type!r} "
                    "(use _include:iterate to follow included resources)")
        return None
    if code != "*":
        param = ctx.registry.get(source, code)
        if param is None or param.type != "reference":
            ctx.unknown(f"{name}={value}", f"{source} has no reference parameter {code!r}")
            return None
    return Include(source, code, target, iterate, reverse)


# -- search parameters -----------------------------------------------------------------------------

def _common_param(ctx: _Context, search_types: tuple[str, ...], code: str) -> SearchParam | None:
    """The parameter ``code`` on every searched type (system search: the Resource-level definition)."""
    if not search_types:
        found = ctx.registry.get("Resource", code)
        return found if found is not None and set(found.base) & {"Resource", "DomainResource"} else None
    params = [ctx.registry.get(t, code) for t in search_types]
    if any(p is None for p in params):
        return None
    first = params[0]
    if first is None or any(p is not None and p.type != first.type for p in params):
        return None
    targets = tuple(dict.fromkeys(target for p, t in zip(params, search_types, strict=True) if p is not None
                                  for target in ctx.registry.targets_for(p, t)))
    return first if targets == first.target else replace(first, target=targets)


def _parse_clause(ctx: _Context, resource_type: str | None, search_types: tuple[str, ...], name: str,
                  value: str, depth: int = 0) -> Clause | HasClause | None:
    if depth > _MAX_CHAIN_DEPTH:
        raise invalid(f"{name}: chains deeper than {_MAX_CHAIN_DEPTH} levels are not supported", "too-costly")
    if name.startswith("_has:"):
        return _parse_has(ctx, resource_type, name, value, depth)
    if name == "_list":
        return _parse_list(ctx, resource_type, value, depth)
    head, dot, tail = name.partition(".")
    code, _, modifier = head.partition(":")
    param = _common_param(ctx, search_types, code)
    if param is None or (not param.indexed and code not in ("_id", "_lastUpdated")):
        ctx.unknown(name, f"no search parameter {code!r} on {'/'.join(search_types) or 'Resource'}")
        return None
    if dot:
        return _parse_chain(ctx, name, param, modifier or None, tail, value, depth)
    return _parse_simple(ctx, name, param, modifier or None, value)


def _parse_simple(ctx: _Context, name: str, param: SearchParam, modifier: str | None,
                  value: str) -> Clause | None:
    if modifier is not None and not _modifier_allowed(param, modifier):
        raise invalid(f"{name}: modifier :{modifier} is not supported for {param.type} parameters",
                      "not-supported")
    if modifier == "missing":
        if value not in ("true", "false"):
            raise invalid(f"{name}: :missing takes true or false, not {value!r}")
        return Clause(name, param, modifier, (MissingValue(value, value == "true"),))
    raws = [v for v in split_unescaped(value, ",")]
    if not any(raws):
        raise invalid(f"{name}: empty value")
    values = tuple(_parse_value(ctx, name, param, modifier, raw) for raw in raws if raw != "")
    terminology = tuple(_terminology(name, modifier, v) for v in values) if modifier in (
        "above", "below", "in", "not-in") and param.type == "token" else ()
    return Clause(name, param, modifier, values, terminology=terminology)


def _modifier_allowed(param: SearchParam, modifier: str) -> bool:
    if param.code == "_id":
        return modifier in ("missing", "not")
    if param.type == "reference" and _TYPE_NAME.match(modifier):
        return True
    return modifier in MODIFIERS.get(param.type, frozenset())


def _terminology(name: str, modifier: str | None, value: Value) -> TerminologyRequest:
    if not isinstance(value, TokenValue) or value.code is None:
        raise invalid(f"{name}: :{modifier} needs a code or value set")
    if modifier in ("in", "not-in"):
        return TerminologyRequest("in", value_set=value.code if value.system is None else value.raw)
    if not value.system:
        raise invalid(f"{name}: :{modifier} needs system|code")
    return TerminologyRequest(str(modifier), system=value.system, code=value.code)


def _parse_chain(ctx: _Context, name: str, param: SearchParam, type_modifier: str | None, tail: str,
                 value: str, depth: int) -> Clause | None:
    if param.type != "reference":
        raise invalid(f"{name}: only reference parameters can be chained")
    if type_modifier is not None and not _TYPE_NAME.match(type_modifier):
        raise invalid(f"{name}: :{type_modifier} is not a resource type")
    targets = (type_modifier,) if type_modifier else param.target
    chain: list[tuple[str, Clause]] = []
    for target in targets:
        inner_code = tail.partition(".")[0].partition(":")[0]
        if ctx.registry.get(target, inner_code) is None:
            continue
        inner = _parse_clause(ctx, target, (target,), tail, value, depth + 1)
        if isinstance(inner, Clause):
            chain.append((target, inner))
    if not chain:
        ctx.unknown(name, f"no target of {param.code!r} has a parameter {tail!r}")
        return None
    return Clause(name, param, type_modifier, (), chain=tuple(chain))


def _parse_has(ctx: _Context, resource_type: str | None, name: str, value: str,
               depth: int) -> HasClause | None:
    parts = name.split(":", 3)
    if len(parts) != 4 or not _TYPE_NAME.match(parts[1]):
        raise invalid(f"{name}: expected _has:Type:reference-param:search-param")
    _, source_type, ref_code, rest = parts
    if resource_type is None:
        raise invalid(f"{name}: _has needs a resource type")
    param = ctx.registry.get(source_type, ref_code)
    if param is None or param.type != "reference":
        ctx.unknown(name, f"{source_type} has no reference parameter {ref_code!r}")
        return None
    if param.target and resource_type not in param.target:
        ctx.unknown(name, f"{source_type}.{ref_code} cannot refer to {resource_type}")
        return None
    inner = _parse_clause(ctx, source_type, (source_type,), rest, value, depth + 1)
    if inner is None:
        return None
    return HasClause(name, source_type, param, inner)


def _parse_list(ctx: _Context, resource_type: str | None, value: str, depth: int) -> HasClause | None:
    """``_list=id`` (search.html#list): the resources ``List/id`` refers to in ``entry.item``, which is
    ``_has:List:item:_id=id``: the List is read as any List is, through the caller's access filter, and several
    ids are several lists (any of them). The functional lists (``$current-problems``...) are not served."""
    if resource_type is None:
        ctx.unknown("_list", "_list needs a resource type")
        return None
    if any(raw.startswith("$") for raw in split_unescaped(value, ",")):
        raise invalid(f"_list: functional lists ({value}) are not supported: name a List by its id",
                      "not-supported")
    clause = _parse_has(ctx, resource_type, "_has:List:item:_id", value, depth)
    return None if clause is None else replace(clause, name="_list")


# -- values ----------------------------------------------------------------------------------------

def _parse_value(ctx: _Context, name: str, param: SearchParam, modifier: str | None, raw: str) -> Value:
    kind = "token" if param.code == "_id" else param.type
    try:
        if kind == "composite":
            return _composite_value(ctx, name, param, raw)
        return _typed_value(ctx, kind, modifier, raw)
    except ValueError as exc:
        raise invalid(f"{name}: invalid value {raw!r}: {exc}") from exc


def _typed_value(ctx: _Context, kind: str, modifier: str | None, raw: str) -> Value:
    if kind == "token":
        return token_value(raw, of_type=modifier == "of-type")
    if kind == "string":
        return StringValue(raw, unescape(raw))
    if kind == "date":
        prefix, rest = split_prefix(raw)
        return DateValue(raw, prefix, parse_date_range(rest))
    if kind in ("number", "quantity"):
        return number_value(raw, quantity=kind == "quantity")
    if kind == "reference":
        return reference_value(raw, modifier, ctx.base_url)
    if kind == "uri":
        return UriValue(raw, unescape(raw))
    raise ValueError(f"{kind} parameters are not supported")


def split_prefix(raw: str) -> tuple[str, str]:
    """``ge2020`` -> (``ge``, ``2020``); no prefix -> ``eq``. Letters that are not a prefix raise."""
    head = raw[:2]
    if head.isalpha():
        if head not in PREFIXES:
            raise ValueError(f"unknown prefix {head!r}")
        return head, raw[2:]
    return "eq", raw


def token_value(raw: str, *, of_type: bool = False) -> TokenValue:
    parts = [unescape(p) for p in split_unescaped(raw, "|")]
    if of_type:
        if len(parts) != 3 or not all(parts):
            raise ValueError(":of-type expects type-system|type-code|value")
        return TokenValue(raw, parts[2], None, parts[0], parts[1])
    if len(parts) == 1:
        return TokenValue(raw, parts[0] or None)
    if len(parts) == 2:
        if not parts[0] and not parts[1]:
            raise ValueError("'|' alone is not a token")
        return TokenValue(raw, parts[1] or None, parts[0])
    raise ValueError("too many '|' in a token")


def number_value(raw: str, *, quantity: bool) -> NumberValue:
    prefix, rest = split_prefix(raw)
    parts = [unescape(p) for p in split_unescaped(rest, "|")] if quantity else [rest]
    if len(parts) not in (1, 3):
        raise ValueError("expected number or number|system|code")
    number = parse_decimal(parts[0])
    lo, hi = precision_bounds(number)
    if not quantity:
        return NumberValue(raw, prefix, number, lo, hi)
    system, code = (parts[1] or None, parts[2] or None) if len(parts) == 3 else (None, None)
    return QuantityValue(raw, prefix, number, lo, hi, system, code)


def reference_value(raw: str, modifier: str | None, base_url: str | None) -> ReferenceValue:
    text = unescape(raw)
    if modifier == "identifier":
        return ReferenceValue(raw, identifier=token_value(raw))
    if base_url and text.startswith(base_url):
        text = text[len(base_url):]
    if "://" in text or text.startswith("urn:"):
        return ReferenceValue(raw, url=text)
    segments = text.split("/")
    type_modifier = modifier if modifier and _TYPE_NAME.match(modifier) else None
    if len(segments) == 1 and _ID.match(text):
        return ReferenceValue(raw, type=type_modifier, id=text)
    if len(segments) in (2, 4) and _TYPE_NAME.match(segments[0]) and _ID.match(segments[1]):
        if type_modifier and segments[0] != type_modifier:
            raise ValueError(f"type {segments[0]} contradicts modifier :{type_modifier}")
        version = segments[3] if len(segments) == 4 and segments[2] == "_history" else None
        if len(segments) == 4 and version is None:
            raise ValueError("expected Type/id/_history/version")
        return ReferenceValue(raw, type=segments[0], id=segments[1], version=version)
    raise ValueError("expected [Type/]id or an absolute URL")


def _composite_value(ctx: _Context, name: str, param: SearchParam, raw: str) -> CompositeValue:
    parts = split_unescaped(raw, "$")
    if len(parts) != len(param.components):
        raise ValueError(f"expected {len(param.components)} components separated by '$'")
    values: list[Value] = []
    for index, part in enumerate(parts):
        component = ctx.registry.component_param(param, index, param.base[0])
        if component is None:
            raise ValueError(f"component {index} has no known definition")
        values.append(_typed_value(ctx, component.type, None, part))
    return CompositeValue(raw, tuple(values))
