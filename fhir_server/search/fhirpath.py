"""Compile SearchParameter FHIRPath expressions once, per resource type, for ``fhirpathpy``.

Spec: https://hl7.org/fhir/R4/searchparameter-definitions.html and https://hl7.org/fhir/R4/search.html#table
(``SearchParameter.expression``). R4 expressions are shared by many base types
(``Condition.code | Observation.code``); we keep only the union branches whose root is the resource type being
indexed (or a generic ``Resource.``/``DomainResource.`` root), so that each branch is cheap and never sees a
foreign type. Three rewrites make the official expressions work with ``fhirpathpy`` 2.x:

* ``(X as T)`` and ``X.as(T)`` become ``(X).ofType(T)``: the FHIRPath ``as`` operator demands a singleton and
  fhirpathpy raises on ``(Observation.component.value as Quantity)`` when there are several components;
  ``ofType`` has the intended filter semantics on collections.
* ``.where(resolve() is T)``: fhirpathpy has no ``resolve()``. The clause is removed and ``T`` is returned as
  a *type restriction*: the caller keeps only references whose type (taken from the reference string)
  is ``T``.
* Simple paths (``Observation.code``, ``(Observation.value as Quantity)``, ``Patient.name.family``) are
  evaluated by a small dictionary walker (:class:`SimplePath`) that resolves choice types with the fhirpathpy
  R4 model; it gives the same results as fhirpathpy about 20x faster (the write path runs ~40 parameters per
  Observation). Everything else goes to ``fhirpathpy.compile``.
* Unsupported expressions (compile errors) evaluate to nothing rather than failing writes; they are listed by
  :func:`compile_expression` callers for diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirpathpy import compile as fp_compile
from fhirpathpy.models import models

_R4_MODEL = models["r4"]
_GENERIC_ROOTS = ("Resource", "DomainResource")
_RESOLVE_IS = re.compile(r"\.where\(\s*resolve\(\)\s+is\s+([A-Za-z]+)\s*\)")
_AS_OPERATOR = re.compile(r"\(([^()]+?)\s+as\s+([A-Za-z]+)\)")
_AS_FUNCTION = re.compile(r"\.as\(([A-Za-z]+)\)")
_ROOT = re.compile(r"^\(*\s*([A-Za-z]+)")
_SIMPLE = re.compile(r"^\(?(?P<path>[A-Za-z]+(?:\.[A-Za-z]+)*)\)?(?:\.ofType\((?P<type>[A-Za-z]+)\)"
                     r"(?P<rest>(?:\.[A-Za-z]+)*))?$")
_CHOICES: dict[str, list[str]] = _R4_MODEL["choiceTypePaths"]

Evaluator = Callable[..., list[Any]]


@dataclass(frozen=True)
class CompiledBranch:
    """One union branch of an expression, compiled, with an optional reference type restriction."""

    source: str
    evaluate: Evaluator
    reference_type: str | None = None
    top_keys: frozenset[str] | None = None  # resource keys the branch can read (None: unknown)


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


def root_of(branch: str) -> str | None:
    """The root identifier of a branch (``Observation`` in ``(Observation.value as Quantity)``)."""
    match = _ROOT.match(branch)
    return match.group(1) if match else None


def branch_applies(branch: str, resource_type: str) -> bool:
    root = root_of(branch)
    if root is None:
        return False
    if root in _GENERIC_ROOTS or root == resource_type:
        return True
    return not root[0].isupper()  # relative path (composite components, e.g. "value.as(Quantity)")


def rewrite(branch: str) -> tuple[str, str | None]:
    """Apply the fhirpathpy rewrites; return (expression, reference type restriction)."""
    reference_type: str | None = None
    match = _RESOLVE_IS.search(branch)
    if match:
        reference_type = match.group(1)
        branch = _RESOLVE_IS.sub("", branch)
    previous = None
    while previous != branch:
        previous = branch
        branch = _AS_OPERATOR.sub(r"(\1).ofType(\2)", branch)
    branch = _AS_FUNCTION.sub(r".ofType(\1)", branch)
    for generic in _GENERIC_ROOTS:
        if branch.startswith(generic + "."):
            branch = branch[len(generic) + 1:]
    return branch, reference_type


def compile_expression(expression: str, resource_type: str) -> list[CompiledBranch]:
    """Compile the branches of ``expression`` that apply to ``resource_type`` (raises on syntax errors)."""
    compiled: list[CompiledBranch] = []
    for branch in split_union(expression):
        if not branch_applies(branch, resource_type):
            continue
        text, reference_type = rewrite(branch)
        simple = SimplePath.parse(text, resource_type)
        evaluator: Evaluator = simple if simple is not None else fp_compile(text, _R4_MODEL)
        keys = simple.top_keys() if simple is not None else None
        compiled.append(CompiledBranch(text, evaluator, reference_type, keys))
    return compiled


class SimplePath:
    """A dotted path with choice types, optionally with ``ofType(T)`` on its last element, evaluated on plain
    dicts; after a choice element's ``ofType(T)`` of a complex type T, member steps may follow
    (``(Observation.value).ofType(CodeableConcept).text``)."""

    def __init__(self, steps: list[tuple[str, tuple[str, ...]]], root: str | None) -> None:
        self.steps = steps  # (element name, choice type suffixes or ())
        self.root = root
        # per step, the JSON keys to read (None: any ``name[X]`` choice key, found at runtime)
        self._keys: list[tuple[str, tuple[str, ...] | None]] = [
            (name, None if choices == ("*",) else
             tuple(name + c[0].upper() + c[1:] for c in choices) if choices else (name,))
            for name, choices in steps]

    @classmethod
    def parse(cls, text: str, resource_type: str) -> SimplePath | None:
        match = _SIMPLE.match(text)
        if match is None or text.count("(") != text.count(")"):
            return None
        names = match.group("path").split(".")
        wanted = match.group("type")
        root = names[0] if names[0][0].isupper() else None
        if root is not None and root != resource_type:
            return None
        element_path = resource_type if root else ""
        steps: list[tuple[str, tuple[str, ...]]] = []
        for position, name in enumerate(names[1:] if root else names):
            element_path = f"{element_path}.{name}" if element_path else name
            choices = tuple(_CHOICES.get(element_path, ()))
            is_last = position == len(names) - (2 if root else 1)
            if wanted and is_last:
                choices = tuple(c for c in choices if c.lower() == wanted.lower()) if choices else (
                    () if root else (wanted,))  # relative component path: "value.as(Quantity)"
                if not choices:
                    return None  # ofType on a non-choice element: let fhirpathpy decide
            if not choices and not root and is_last and name == "value":
                choices = ("*",)  # relative choice element of unknown context: match value[x] at runtime
            steps.append((name, choices))
        rest = [n for n in (match.group("rest") or "").split(".") if n]
        if rest:
            if root is None or not wanted or not wanted[0].isupper():
                return None
            element_path = wanted
            for name in rest:
                element_path = f"{element_path}.{name}"
                steps.append((name, tuple(_CHOICES.get(element_path, ()))))
        return cls(steps, root)

    def top_keys(self) -> frozenset[str] | None:
        if self.root is None or not self.steps:
            return None
        name, choices = self.steps[0]
        if choices == ("*",):
            return None
        return frozenset(name + c[0].upper() + c[1:] for c in choices) if choices else frozenset({name})

    def __call__(self, node: Any, _context: Any = None) -> list[Any]:
        if self.root is not None and (not isinstance(node, dict) or node.get("resourceType") != self.root):
            return []
        current = [node]
        for name, keys in self._keys:
            current = _step(current, name, keys)
            if not current:
                break
        return current


def _dynamic_choice_keys(node: dict[str, Any], name: str) -> list[str]:
    size = len(name)
    return [k for k in node if k.startswith(name) and len(k) > size and k[size].isupper()]


def _step(nodes: list[Any], name: str, keys: tuple[str, ...] | None) -> list[Any]:
    out: list[Any] = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        for key in _dynamic_choice_keys(node, name) if keys is None else keys:
            value = node.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            else:
                out.append(value)
    return out


def evaluate(branches: list[CompiledBranch], node: Any) -> list[tuple[Any, str | None]]:
    """Evaluate compiled branches on a resource (or element); pairs of (value, reference type restriction)."""
    out: list[tuple[Any, str | None]] = []
    for branch in branches:
        try:
            values = branch.evaluate(node, {})
        except Exception:  # fhirpathpy raises some errors only at evaluation: index nothing, never fail
            continue
        out.extend((value, branch.reference_type) for value in values)
    return out
