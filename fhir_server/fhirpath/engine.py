"""The FHIRPath engine: a native compiled evaluator for a common subset, fhirpathpy with the R4 model for the rest.

Spec: https://hl7.org/fhirpath/N1/ and https://hl7.org/fhir/R4/fhirpath.html. fhirpathpy costs 20-400 us per
evaluation, which dominated both validation and search index extraction; most expressions are navigation,
``where``/``exists``, comparisons and boolean logic, which :mod:`fhir_server.fhirpath.compiler` compiles into
closures (plain navigation into one loop). Any construct outside the subset -- at compile time or at run time
(e.g. comparing a date with a number) -- is evaluated by fhirpathpy on the same parse tree instead, so results
never depend on the shortcut.

An :class:`Expression` raises what goes wrong; callers decide what a failure means for them (a broken invariant
is a warning issue, a broken search parameter indexes nothing) and report it with :meth:`Expression.log_failure`,
which logs once per expression rather than once per resource.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode

from fhir_server.fhirpath.compiler import Compiled, compile_node, constant_name, constant_value
from fhir_server.fhirpath.model import R4_MODEL
from fhir_server.fhirpath.navigation import Collection, Unsupported
from fhir_server.fhirpath.syntax import Node, parse

log = logging.getLogger(__name__)
_NO_ENV: dict[str, Any] = {}  # for compiled navigation, which reads no variable (never written to)


class Expression:
    """A FHIRPath expression compiled once; :meth:`evaluate` returns the result collection.

    ``tree`` is the parse tree when a caller has rewritten it (search parameters); ``focus_type`` is the type
    of the focus when it is known for every evaluation (a resource type): relative paths then find choice
    elements from the R4 model at compile time. Raises :class:`FhirPathSyntaxError` on invalid text.
    """

    def __init__(self, text: str, tree: Node | None = None, focus_type: str | None = None) -> None:
        self.text = text
        self.tree = parse(text) if tree is None else tree
        compiled: Compiled | None
        try:
            compiled = compile_node(self.tree, focus_type)
            self.unsupported: str | None = None
        except Unsupported as exc:
            compiled, self.unsupported = None, str(exc)
        self._native = compiled.run if compiled is not None else None
        self._uses_env = compiled is None or compiled.uses_env
        walk = compiled.walk if compiled is not None else None
        self._walk = walk.run() if walk is not None else None  # navigation: no environment, no collection
        # the keys of the focus the result depends on, when the expression is navigation (None: unknown)
        self.top_keys: frozenset[str] | None = walk.top_keys() if walk is not None else None
        self._slow: Callable[[Any, dict[str, Any]], Collection] | None = None
        self._failed = False

    @property
    def native(self) -> bool:
        return self._native is not None

    def evaluate(self, focus: Any, resource: Any, type_path: str | None = None,
                 primitive_type: str | None = None, *, root: Any = None) -> Collection:
        """Evaluate on ``focus`` (an element of ``resource`` or the resource itself); ``type_path`` is the
        element's path (``Observation.component``), which fhirpathpy needs to resolve choice types;
        ``primitive_type`` is the FHIR type of a primitive focus (``dateTime``), which type operators need
        (``$this as dateTime``: a JSON string alone could be any string-based type); ``root`` is
        ``%rootResource`` when it is not ``resource`` (the container of a contained resource)."""
        try:
            if self._walk is not None:
                return self._walk(focus)
            if self._native is not None:
                env = {"resource": resource, "rootResource": resource if root is None else root, "context": focus,
                       "this": focus} if self._uses_env else _NO_ENV
                return self._native([focus], env)
        except Unsupported:
            pass
        return self.slow(focus, resource, type_path, primitive_type, root=root)

    def slow(self, focus: Any, resource: Any, type_path: str | None = None,
             primitive_type: str | None = None, *, root: Any = None) -> Collection:
        """fhirpathpy's answer (also used by tests to check the native evaluator)."""
        if self._slow is None:
            self._slow = _fhirpathpy(self.tree)
        target = focus
        if focus is not resource and isinstance(focus, dict) and type_path:
            target = ResourceNode.create_node(focus, type_path)
        elif primitive_type and not isinstance(focus, dict | list):
            target = ResourceNode.create_node(focus, primitive_type)  # a bare type name: a FHIR primitive
        return list(self._slow(target, {"resource": resource, "rootResource": resource if root is None else root}))

    def log_failure(self, error: Exception, subject: str, consequence: str = "") -> None:
        """Report that evaluating this expression on ``subject`` raised ``error`` (``consequence``: what the
        caller did about it): a WARNING the first time, DEBUG afterwards (a broken expression on the write path
        would otherwise log once per resource)."""
        first = not self._failed
        self._failed = True
        log.log(logging.WARNING if first else logging.DEBUG, "FHIRPath %r could not be evaluated on %s: %s: %s%s%s",
                self.text, subject, type(error).__name__, error, f"; {consequence}" if consequence else "",
                " (further failures of this expression are logged at DEBUG level)" if first else "")


def _fhirpathpy(tree: Node) -> Callable[[Any, dict[str, Any]], Collection]:
    parsed = {"children": [tree]}
    constants = _constants(tree)  # fhirpathpy knows %ucum but not R4's %vs-[name] and %ext-[name]
    return lambda target, variables: apply_parsed_path(target, parsed, {**constants, **variables}, R4_MODEL)


def _constants(node: Node) -> dict[str, str]:
    """The constants ``node`` uses, by name, with their values."""
    found: dict[str, str] = {}
    if node.get("type") == "ExternalConstantTerm":
        name = constant_name(node)
        value = constant_value(name)
        if value is not None:
            found[name] = value
    for child in node.get("children") or []:
        found.update(_constants(child))
    return found


@functools.lru_cache(maxsize=4096)
def expression(text: str, focus_type: str | None = None) -> Expression:
    """The compiled expression of ``text`` (cached: profiles and rules repeat the same few expressions), on a focus
    of type ``focus_type`` when every evaluation's focus is of that type (see :class:`Expression`)."""
    return Expression(text, focus_type=focus_type)
