"""SearchParameter expressions for index extraction: a search-specific pass over the parse tree, then the engine.

Spec: https://hl7.org/fhir/R4/searchparameter-definitions.html and https://hl7.org/fhir/R4/search.html#table
(``SearchParameter.expression``). R4 expressions are shared by many base types (``Condition.code |
Observation.code``); only the union branches whose root is the resource type being indexed (or a generic
``Resource.``/``DomainResource.`` root, or a relative path) are kept, so each branch is cheap and never sees a
foreign type. The pass then rewrites each branch's parse tree (a new tree; parses are shared):

* ``X as T`` and ``X.as(T)`` become ``X.ofType(T)``: FHIRPath's ``as`` demands a singleton (fhirpathpy raises on
  ``(Observation.component.value as Quantity)`` when there are several components); the definitions mean the
  filter, which ``ofType`` is.
* ``X.where(resolve() is T)`` becomes ``X`` with the *type restriction* ``T``: resolving a reference is I/O,
  which search does not do; the reference entry builder keeps only references whose type, read from the
  reference string, is ``T``.
* A generic root is dropped (``Resource.meta.tag`` becomes ``meta.tag``, evaluated on the resource).

The rewritten tree is compiled by the FHIRPath engine (:mod:`fhir_server.fhirpath`) with the resource type as the
focus type, which also tells the extraction plan which top-level keys a navigation branch reads (``top_keys``).

Failures are logged, not swallowed, and never fail a write: a broken SearchParameter must not block clinical
writes. A branch that cannot be compiled is logged (WARNING, with the parameter's url and code) by the registry
when it compiles the parameter, and indexes nothing. A branch whose evaluation raises on a resource is logged
(WARNING the first time, then DEBUG: :meth:`~fhir_server.fhirpath.Expression.log_failure`) and gives no values
for that resource; the write succeeds with that parameter's values empty (or, for a parameter of several
branches, with the values of the others).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fhir_server.fhirpath import Expression, parse
from fhir_server.fhirpath.syntax import (
    Node,
    children,
    function_name,
    function_params,
    identifier,
    invocation,
    of_type_call,
    operator,
    term,
)

GENERIC_ROOTS = frozenset({"Resource", "DomainResource"})
# where a branch's leftmost descent stops: the identifier or function it starts from, or a constant
_STARTS = frozenset({"MemberInvocation", "FunctionInvocation", "LiteralTerm", "ExternalConstantTerm",
                     "ThisInvocation"})
_LEFTMOST = frozenset({"InvocationExpression", "TermExpression", "ParenthesizedTerm", "TypeExpression",
                       "InvocationTerm", "IndexerExpression", "UnionExpression", "PolarityExpression"})


@dataclass(frozen=True)
class CompiledBranch:
    """One union branch of a parameter's expression, rewritten and compiled, with its reference type
    restriction."""

    source: str  # the branch as the definition writes it
    expression: Expression
    reference_type: str | None = None
    parameter: str = ""  # the parameter, for log messages: "url (code)"

    @property
    def top_keys(self) -> frozenset[str] | None:
        """The resource keys the branch can read (None: unknown, evaluate it on every resource)."""
        return self.expression.top_keys


def split_union(expression: str) -> list[str]:
    """Split an expression on top-level ``|`` (outside parentheses and string literals)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for ch in expression:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def root_of(tree: Node) -> str | None:
    """The identifier a branch starts from (``Observation`` in ``(Observation.value as Quantity)``, ``resolve``
    in ``resolve()``); None when it starts from a constant or a literal."""
    node = tree
    while node.get("type") not in _STARTS and children(node):
        node = children(node)[0]
    if node.get("type") == "MemberInvocation":
        return identifier(node)
    return function_name(node)


def branch_applies(root: str | None, resource_type: str) -> bool:
    if root is None:
        return False
    if root in GENERIC_ROOTS or root == resource_type:
        return True
    return not root[0].isupper()  # relative path (composite components, e.g. "value.as(Quantity)")


def rewrite(tree: Node) -> tuple[Node, str | None]:
    """The search rewrites of one branch: (new tree, reference type restriction or None)."""
    restrictions: list[str] = []
    rewritten = _drop_generic_root(_rewrite(tree, restrictions))
    return rewritten, (restrictions[0] if restrictions else None)


def _rewrite(node: Node, restrictions: list[str]) -> Node:
    kind = node.get("type")
    if kind == "InvocationExpression":
        left, right = children(node)
        restriction = _resolve_is(right)
        if restriction is not None:  # X.where(resolve() is T) -> X, restricted to references to T
            restrictions.append(restriction)
            return _rewrite(left, restrictions)
        params = function_params(right) if function_name(right) == "as" else []
        target = identifier(params[0]) if len(params) == 1 else None
        if target is not None:  # X.as(T) -> X.ofType(T)
            return invocation(_rewrite(left, restrictions), of_type_call(target))
    if kind == "TypeExpression" and operator(node) == "as":
        operand, type_specifier = children(node)
        target = identifier(type_specifier)
        if target is not None:  # X as T -> X.ofType(T)
            return invocation(_rewrite(operand, restrictions), of_type_call(target))
    parts = children(node)
    rewritten = [_rewrite(part, restrictions) for part in parts]
    if all(new is old for new, old in zip(rewritten, parts, strict=True)):
        return node
    return {**node, "children": rewritten}


def _resolve_is(node: Node) -> str | None:
    """T when ``node`` is the invocation ``where(resolve() is T)``, else None."""
    params = function_params(node) if function_name(node) == "where" else []
    if len(params) != 1 or params[0].get("type") != "TypeExpression" or operator(params[0]) != "is":
        return None
    tested, type_specifier = children(params[0])
    while tested.get("type") in ("TermExpression", "InvocationTerm"):
        tested = children(tested)[0]
    if function_name(tested) != "resolve" or function_params(tested):
        return None
    return identifier(type_specifier)


def _drop_generic_root(node: Node) -> Node:
    """``Resource.meta.tag`` -> ``meta.tag``: the leftmost ``Resource.``/``DomainResource.`` step goes."""
    kind = node.get("type")
    if kind not in _LEFTMOST or not children(node):
        return node
    first, *rest = children(node)
    if kind == "InvocationExpression" and identifier(first) in GENERIC_ROOTS and rest:
        return term(rest[0])
    new_first = _drop_generic_root(first)
    return node if new_first is first else {**node, "children": [new_first, *rest]}


def compile_expression(expression: str, resource_type: str, parameter: str = "") -> list[CompiledBranch]:
    """Compile the branches of ``expression`` that apply to ``resource_type`` ("" for a composite's component,
    relative to the composite's element); raises :class:`~fhir_server.fhirpath.FhirPathSyntaxError`."""
    compiled: list[CompiledBranch] = []
    for source in split_union(expression):
        root, rewritten, reference_type = _prepared(source)
        if not branch_applies(root, resource_type):
            continue
        engine = Expression(source, rewritten, focus_type=resource_type or None)
        compiled.append(CompiledBranch(source, engine, reference_type, parameter))
    return compiled


@functools.lru_cache(maxsize=4096)
def _prepared(source: str) -> tuple[str | None, Node, str | None]:
    """(root, rewritten tree, reference type restriction) of a branch: the same for every registry built."""
    tree = parse(source)
    return (root_of(tree), *rewrite(tree))


def evaluate(branches: list[CompiledBranch], node: Any) -> list[tuple[Any, str | None]]:
    """Evaluate compiled branches on a resource (or element); pairs of (value, reference type restriction).

    A branch that raises is logged and contributes nothing (see the module docstring)."""
    out: list[tuple[Any, str | None]] = []
    for branch in branches:
        try:
            values = branch.expression.evaluate(node, node)
        except Exception as exc:  # the definition, not the resource, is at fault: the write goes on
            branch.expression.log_failure(exc, f"{_describe(node)} for SearchParameter {branch.parameter}",
                                          "the branch gives no index values")
            continue
        out.extend((value, branch.reference_type) for value in values)
    return out


def _describe(node: Any) -> str:
    if isinstance(node, dict) and "resourceType" in node:
        return f"{node['resourceType']}/{node.get('id', '(no id)')}"
    return "an element of a composite"
