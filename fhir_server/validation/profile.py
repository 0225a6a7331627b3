"""StructureDefinition-driven validation of a resource against a profile (pure: no storage, no HTTP).

Implements the checks of https://hl7.org/fhir/R4/validation.html#profile on a snapshot
(https://hl7.org/fhir/R4/elementdefinition.html): cardinality along element paths (including 0..0), types of
choice elements and target profiles of references, fixed[x] (exact) and pattern[x] (subset) values, required
and extensible bindings (codes accepted through ConceptMap equivalence too, e.g. pre-2022 ATC codes), slicing
with value/pattern/exists discriminators (profiling.html#slicing), extensions (context and definition), and
FHIRPath invariants (compiled once). Every issue carries the FHIRPath of the offending element, built from the
JSON names (``Observation.component[1].valueQuantity.value``).

The wire format (JSON types, arrays, required core bindings) is checked by
:mod:`fhir_server.validation.primitives`, which should run first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import Issue
from fhir_server.terminology import ExpansionError
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.elements import CORE_PREFIX, Constraint, ElementNode, build_tree
from fhir_server.validation.fhirpath import expression
from fhir_server.validation.primitives import REQUIRED_VALUE_SETS
from fhir_server.validation.primitives import TYPES as WIRE_TYPES

Json = dict[str, Any]
Resolver = Callable[[str], Json | None]
CODED = frozenset({"code", "Coding", "CodeableConcept"})
REFERENCE_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def _json_type_of_key(key: str, choice_base: str) -> str:
    """``valueDateTime`` -> ``dateTime``; ``valueQuantity`` -> ``Quantity``."""
    suffix = key[len(choice_base):]
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in _PRIMITIVES else suffix


_PRIMITIVES = frozenset({"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal",
                         "id", "instant", "integer", "markdown", "oid", "positiveInt", "string", "time",
                         "unsignedInt", "uri", "url", "uuid", "xhtml"})


def matches_pattern(value: Any, pattern: Any) -> bool:
    """pattern[x] semantics: every element of the pattern appears in the value (arrays: some item matches)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(matches_pattern(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(i, p) for i in items) for p in pattern)
    return value == pattern


@dataclass
class _Context:
    """State of one validate() call."""

    root: Json
    resolve: Resolver | None
    depth: int
    issues: list[Issue] = field(default_factory=list)

    def add(self, severity: str, code: str, message: str, path: str) -> None:
        self.issues.append(Issue(severity, code, f"{path}: {message}", (path,)))


@dataclass(frozen=True)
class _Value:
    """One occurrence of an element in the JSON: its value (None if only ``_name`` extensions), key, path."""

    value: Any
    key: str
    path: str


class ProfileValidator:
    """Validates resources against the StructureDefinitions of a :class:`ConformanceSnapshot`.

    Build once per snapshot and share: element trees and FHIRPath expressions are compiled on first use.
    """

    def __init__(self, conformance: ConformanceSnapshot, core_invariants: bool = False,
                 max_reference_depth: int = 1) -> None:
        self.conformance = conformance
        self.terminology = conformance.terminology
        self.core_invariants = core_invariants
        self.max_reference_depth = max_reference_depth
        self._trees: dict[str, ElementNode | None] = {}

    # --- public API ---------------------------------------------------------------------------------------
    def validate(self, resource: Json, profile: str, resolve: Resolver | None = None) -> list[Issue]:
        """Issues of ``resource`` against ``profile`` (canonical url). ``resolve(reference)`` returns the
        referenced resource (e.g. from the transaction Bundle or the store) or None; without it, references
        are checked by type only."""
        return self._validate(resource, profile, resolve, depth=0)

    def tree(self, profile: str) -> ElementNode | None:
        if profile not in self._trees:
            sd = self.conformance.structure_definition(profile)
            self._trees[profile] = None if sd is None else build_tree(
                sd, lambda vs: vs.split("|")[0] in REQUIRED_VALUE_SETS, self.core_invariants)
        return self._trees[profile]

    # --- walk ---------------------------------------------------------------------------------------------
    def _validate(self, resource: Json, profile: str, resolve: Resolver | None, depth: int) -> list[Issue]:
        root = self.tree(profile)
        rtype = resource.get("resourceType", "")
        if root is None:
            return [Issue("error", "not-found", f"unknown profile {profile}", (rtype,) if rtype else ())]
        if root.path != rtype:
            return [Issue("error", "invalid", f"{profile} constrains {root.path}, not {rtype}", (rtype,))]
        ctx = _Context(resource, resolve, depth)
        self._check_node_value(_Value(resource, rtype, rtype), root, ctx, root.path)
        self._walk(resource, root, rtype, ctx)
        self._check_extensions(resource, rtype, rtype, ctx)
        return ctx.issues

    def _walk(self, obj: Json, node: ElementNode, path: str, ctx: _Context) -> None:
        """Check the children of ``node`` in the JSON object ``obj`` (at FHIRPath ``path``)."""
        for child in node.children:
            if child.inert:
                continue
            values = self._values(obj, child, path)
            self._check_element(values, child, ctx, path)

    def _values(self, obj: Json, node: ElementNode, path: str) -> list[_Value]:
        if node.is_choice:
            base = node.name[:-3]
            keys = [k for k in obj if k.startswith(base) and k[len(base):len(base) + 1].isupper()]
        else:
            keys = [node.name] if node.name in obj or "_" + node.name in obj else []
        out: list[_Value] = []
        for key in keys:
            value, ext = obj.get(key), obj.get("_" + key)
            if isinstance(value, list) or isinstance(ext, list):
                items = value if isinstance(value, list) else [None] * len(ext or [])
                out.extend(_Value(v, key, f"{path}.{key}[{i}]") for i, v in enumerate(items))
            else:
                out.append(_Value(value, key, f"{path}.{key}"))
        return out

    def _check_element(self, values: list[_Value], node: ElementNode, ctx: _Context,
                       parent_path: str) -> None:
        where = f"{parent_path}.{values[0].key if values else node.name.replace('[x]', '')}"
        self._check_cardinality(len(values), node, ctx, where, "")
        for v in values:
            self._check_node_value(v, node, ctx, v.path)
            if isinstance(v.value, dict) and node.children:
                self._walk(v.value, node, v.path, ctx)
        if node.slices or node.slicing_rules == "closed":
            self._check_slices(values, node, ctx, where)

    def _check_cardinality(self, count: int, node: ElementNode, ctx: _Context, path: str, label: str) -> None:
        what = f"slice '{label}'" if label else f"element '{node.name}'"
        if count < node.min:
            ctx.add("error", "required", f"{what} requires at least {node.min} (found {count})", path)
        elif node.max is not None and count > node.max:
            if node.max == 0:
                ctx.add("error", "structure", f"{what} is not allowed in this profile", path)
            else:
                ctx.add("error", "structure", f"{what} allows at most {node.max} (found {count})", path)

    def _check_node_value(self, v: _Value, node: ElementNode, ctx: _Context, path: str) -> None:
        value = v.value
        if value is None:
            return
        type_code = self._type_of(v, node, ctx)
        if node.fixed is not None and value != node.fixed[1]:
            ctx.add("error", "value", f"must be exactly {node.fixed[1]!r}", path)
        if node.pattern is not None and not matches_pattern(value, node.pattern[1]):
            ctx.add("error", "value", f"must match the pattern {node.pattern[1]!r}", path)
        if node.binding is not None and type_code in CODED:
            self._check_binding(value, type_code, node.binding, ctx, path)
        if type_code == "Reference" and isinstance(value, dict):
            self._check_reference(value, node, ctx, path)
        for constraint in node.constraints:
            self._check_constraint(value, constraint, node, ctx, path)

    def _type_of(self, v: _Value, node: ElementNode, ctx: _Context) -> str | None:
        if not node.types:
            return None
        if not node.is_choice:
            return node.types[0].code
        code = _json_type_of_key(v.key, node.name[:-3])
        if code not in {t.code for t in node.types}:
            allowed = ", ".join(t.code for t in node.types)
            ctx.add("error", "structure", f"type {code} is not allowed here (allowed: {allowed})", v.path)
        return code

    # --- slicing ------------------------------------------------------------------------------------------
    def _check_slices(self, values: list[_Value], node: ElementNode, ctx: _Context, path: str) -> None:
        buckets: dict[str, list[_Value]] = {s.slice_name or s.id: [] for s in node.slices}
        for v in values:
            chosen = next((s for s in node.slices if self._in_slice(v.value, s, node)), None)
            if chosen is None:
                if node.slicing_rules == "closed":
                    ctx.add("error", "structure", "matches no slice and the slicing is closed", v.path)
                continue
            buckets[chosen.slice_name or chosen.id].append(v)
        for s in node.slices:
            matched = buckets[s.slice_name or s.id]
            self._check_cardinality(len(matched), s, ctx, path, s.slice_name or s.id)
            for v in matched:
                self._check_node_value(v, s, ctx, v.path)
                if isinstance(v.value, dict) and s.children:
                    self._walk(v.value, s, v.path, ctx)

    def _in_slice(self, value: Any, slice_node: ElementNode, sliced: ElementNode) -> bool:
        for d in sliced.discriminators:
            target = _descend(slice_node, d.path)
            actual = _select(value, d.path)
            if d.type == "exists":
                if bool(actual) != (target is not None and target.min > 0):
                    return False
                continue
            expected = _expected(target, slice_node, d.path)
            if expected is None:
                return False
            kind, wanted = expected
            if kind == "fixed" and not any(a == wanted for a in actual):
                return False
            if kind == "pattern" and not any(matches_pattern(a, wanted) for a in actual):
                return False
        return bool(sliced.discriminators)

    # --- bindings -----------------------------------------------------------------------------------------
    def _check_binding(self, value: Any, type_code: str, binding: tuple[str, str], ctx: _Context,
                       path: str) -> None:
        strength, vs = binding
        codings = _codings(value, type_code)
        try:
            membership = self.terminology.membership(vs)
        except ExpansionError as e:
            # A required binding we cannot evaluate is worth a warning; an extensible one to a value set the
            # server does not hold (e.g. core R4 bindings such as data-absent-reason) would only be noise on
            # every write (extensible: codes from elsewhere are allowed anyway, terminologies.html#extensible).
            if strength == "required":
                ctx.add("warning", "not-supported", f"value set {vs} cannot be evaluated: {e}", path)
            return
        found = [membership.contains(s, c) if s else any(k[1] == c for k in membership.entries)
                 for s, c in codings]
        if any(f is None or f for f in found):
            return
        for system, code in codings:
            if system and self._translated_into(system, code, membership):
                ctx.add("information", "informational", f"{system}|{code} accepted through a ConceptMap "
                        f"equivalent in {vs}", path)
                return
        shown = ", ".join(f"{s}|{c}" if s else str(c) for s, c in codings) or "no code"
        systems = {k[0] for k in membership.entries} | membership.open_systems
        if strength == "required" or any(s in systems for s, _ in codings):
            ctx.add("error", "code-invalid", f"{shown} is not in the {strength} value set {vs}", path)
        else:
            ctx.add("warning", "code-invalid", f"{shown} is not in the extensible value set {vs}", path)

    def _translated_into(self, system: str, code: str, membership: Any) -> bool:
        for match in self.terminology.translate(system, code):
            if match.usable and match.system and match.code and membership.contains(match.system, match.code):
                return True
        return False

    # --- references ---------------------------------------------------------------------------------------
    def _check_reference(self, value: Json, node: ElementNode, ctx: _Context, path: str) -> None:
        targets = [p for t in node.types if t.code == "Reference" for p in t.target_profiles]
        reference = value.get("reference")
        if not targets or not isinstance(reference, str):
            return
        allowed = {self._type_of_profile(p) for p in targets}
        resolved = self._resolve(reference, ctx)
        rtype = resolved.get("resourceType") if resolved is not None else _reference_type(reference)
        if rtype is not None and rtype not in allowed and "Resource" not in allowed:
            ctx.add("error", "structure", f"reference to {rtype} is not allowed (allowed: "
                    f"{', '.join(sorted(a for a in allowed if a))})", f"{path}.reference")
            return
        profiled = [p for p in targets if not p.startswith(CORE_PREFIX)]
        if not profiled or ctx.resolve is None or ctx.depth >= self.max_reference_depth:
            return
        if resolved is None:
            ctx.add("warning", "not-found", f"{reference} could not be resolved; its profile was not checked",
                    f"{path}.reference")
        elif not any(self._conforms_at_depth(resolved, p, ctx) for p in profiled):
            ctx.add("error", "invalid", f"{reference} does not conform to {' or '.join(profiled)}",
                    f"{path}.reference")

    def _resolve(self, reference: str, ctx: _Context) -> Json | None:
        if reference.startswith("#"):
            return next((c for c in ctx.root.get("contained", []) if c.get("id") == reference[1:]), None)
        return ctx.resolve(reference) if ctx.resolve is not None else None

    def _conforms_at_depth(self, resource: Json, profile: str, ctx: _Context) -> bool:
        issues = self._validate(resource, profile, ctx.resolve, ctx.depth + 1)
        return not any(i.severity in ("error", "fatal") for i in issues)

    def _type_of_profile(self, profile: str) -> str:
        sd = self.conformance.structure_definition(profile)
        return sd["type"] if sd is not None else profile.rsplit("/", 1)[-1]

    # --- invariants ---------------------------------------------------------------------------------------
    def _check_constraint(self, value: Any, constraint: Constraint, node: ElementNode, ctx: _Context,
                          path: str) -> None:
        try:
            result = expression(constraint.expression).evaluate(value, ctx.root, node.path.replace("[x]", ""))
        except Exception as e:  # a broken invariant must not take the write path down
            ctx.add("warning", "processing", f"invariant {constraint.key} could not be evaluated: {e}", path)
            return
        if result and not all(r is True for r in result):
            severity = "error" if constraint.severity == "error" else "warning"
            ctx.add(severity, "invariant", f"{constraint.key}: {constraint.human}", path)

    # --- extensions ---------------------------------------------------------------------------------------
    def _check_extensions(self, obj: Any, element_path: str, path: str, ctx: _Context) -> None:
        """Extensions anywhere in the resource: known definitions are validated, with their context."""
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                self._check_extensions(item, element_path, f"{path}[{i}]", ctx)
            return
        if not isinstance(obj, dict):
            return
        for key, value in obj.items():
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                for i, ext in enumerate(value):
                    self._check_extension(ext, key, element_path, f"{path}.{key}[{i}]", ctx)
            elif isinstance(value, dict | list) and key != "contained":
                name = key[1:] if key.startswith("_") else key
                self._check_extensions(value, f"{element_path}.{name}", f"{path}.{name}", ctx)

    def _check_extension(self, ext: Any, key: str, element_path: str, path: str, ctx: _Context) -> None:
        url = ext.get("url") if isinstance(ext, dict) else None
        if not isinstance(url, str):
            return
        sd = self.conformance.structure_definition(url)
        if sd is None or sd.get("type") != "Extension":
            if key == "modifierExtension":
                ctx.add("error", "extension", f"unknown modifier extension {url}", path)
            return
        contexts = [c.get("expression", "") for c in sd.get("context", []) if c.get("type") == "element"]
        if contexts and not any(_context_allows(c, element_path) for c in contexts):
            ctx.add("error", "extension", f"extension {url} is not allowed on {element_path} "
                    f"(context: {', '.join(contexts)})", path)
        root = self.tree(url)
        if root is not None:
            self._check_node_value(_Value(ext, key, path), root, ctx, path)
            self._walk(ext, root, path, ctx)


def _context_allows(expression: str, element_path: str) -> bool:
    """Extension context of type element (structuredefinition.html#context): a path or a type name."""
    if expression in ("Element", "Resource", "DomainResource", element_path):
        return True
    if "." not in element_path:
        return False  # a resource root matches only its own name
    return _element_type(element_path) == expression


def _element_type(element_path: str) -> str | None:
    """FHIR type of a path made of JSON names (``Patient.identifier`` -> ``Identifier``)."""
    parts = element_path.split(".")
    info = WIRE_TYPES.get(parts[0])
    target: str | None = parts[0]
    for part in parts[1:]:
        row = info.rows.get(part) if info else None
        if row is None:
            return None
        target, info = row.target, WIRE_TYPES.get(row.target)
    return target


def _codings(value: Any, type_code: str) -> list[tuple[str | None, Any]]:
    if type_code == "code":
        return [(None, value)]
    if type_code == "Coding":
        return [(value.get("system"), value.get("code"))] if isinstance(value, dict) else []
    coding = value.get("coding", []) if isinstance(value, dict) else []
    return [(c.get("system"), c.get("code")) for c in coding if isinstance(c, dict)]


def _reference_type(reference: str) -> str | None:
    m = REFERENCE_TYPE.search(reference)
    return m.group(1) if m else None


def _descend(node: ElementNode, path: str) -> ElementNode | None:
    """The element at a discriminator path below a slice (``$this``, ``system``, ``code.coding``...)."""
    current: ElementNode | None = node
    for part in path.split("."):
        if part == "$this" or current is None:
            continue
        current = current.child(part)
    return current


def _select(value: Any, path: str) -> list[Any]:
    """Values at a simple discriminator path in the instance."""
    items = [value]
    for part in path.split("."):
        if part == "$this":
            continue
        nxt: list[Any] = []
        for item in items:
            if isinstance(item, dict):
                found = item.get(part)
                nxt.extend(found if isinstance(found, list) else [found] if found is not None else [])
        items = nxt
    return items


def _expected(target: ElementNode | None, slice_node: ElementNode, path: str) -> tuple[str, Any] | None:
    """What a slice requires at the discriminator path: ('fixed'|'pattern', value)."""
    if target is not None and target.fixed is not None:
        return "fixed", target.fixed[1]
    if target is not None and target.pattern is not None:
        return "pattern", target.pattern[1]
    if path == "url":
        # Extension slices: the url is the canonical of the extension's profile (profiling.html#slicing).
        profiles = [p for t in slice_node.types for p in t.profiles]
        if profiles:
            return "fixed", profiles[0]
    return None
