"""StructureDefinition-driven validation of a resource against a profile (pure: no storage, no HTTP).

Implements the checks of https://hl7.org/fhir/R4/validation.html#profile on a snapshot
(https://hl7.org/fhir/R4/elementdefinition.html): cardinality along element paths (including 0..0), types of
choice elements and target profiles of references, fixed[x] (exact) and pattern[x] (subset) values, required
and extensible bindings of coded values and of a Quantity's unit (codes accepted through ConceptMap
equivalence too, e.g. pre-2022 ATC codes), slicing with value/pattern/exists discriminators and type
discriminators on ``$this``, on an element below it and through ``resolve()`` (profiling.html#slicing),
extensions (where they are used, see :mod:`~fhir_server.validation.extension_context`, and their definition),
and FHIRPath invariants (compiled once). Every issue carries the FHIRPath of the offending element, built from the
JSON names (``Observation.component[1].valueQuantity.value``).

The wire format (JSON types, arrays, required core bindings) is checked by
:mod:`fhir_server.validation.primitives`, which should run first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server import fhirjson
from fhir_server.errors import Issue
from fhir_server.fhirpath import expression
from fhir_server.json_types import Json
from fhir_server.terminology import ExpansionError
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.elements import CORE_PREFIX, Constraint, ElementNode, build_tree
from fhir_server.validation.extension_context import ExtensionUses, Host, allows, broken_invariants, extension_sites
from fhir_server.validation.primitives import REQUIRED_VALUE_SETS, TYPES

Resolver = Callable[[str], Json | None]
# Types a binding applies to (elementdefinition.html#ElementDefinition.binding): a Quantity by its unit.
CODED = frozenset({"code", "Coding", "CodeableConcept", "Quantity"})
# How many referenced resources' conformance a validator remembers (a Bundle's worth and more; then it starts over)
CONFORMANCE_MEMO = 4096
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
    strict_modifiers: bool = True  # an unknown modifier extension is an error (it may change any meaning)
    issues: list[Issue] = field(default_factory=list)

    def add(self, severity: str, code: str, message: str, path: str) -> None:
        issue = Issue(severity, code, f"{path}: {message}", (path,))
        # A slice repeats the rules of its sliced element (bp's component:SystolicBP has vs-3 and the UCUM
        # binding of every component): one broken rule is one issue.
        if issue not in self.issues:
            self.issues.append(issue)


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
        self._conformance: dict[tuple[str, bytes], bool] = {}  # (profile, referenced content) -> conforms
        self.extension_uses = ExtensionUses(conformance.structure_definitions())

    # --- public API ---------------------------------------------------------------------------------------
    def validate(self, resource: Json, profile: str, resolve: Resolver | None = None) -> list[Issue]:
        """Issues of ``resource`` against ``profile`` (canonical url), its extensions included.
        ``resolve(reference)`` returns the referenced resource (e.g. from the transaction Bundle or the store)
        or None; without it, references are checked by type only."""
        return self.validate_all(resource, (profile,), resolve)

    def validate_all(self, resource: Json, profiles: Sequence[str], resolve: Resolver | None = None
                     ) -> list[Issue]:
        """Issues of ``resource`` against every profile of ``profiles``, and of its extensions once: where
        they are used (every known extension, profiles or not: extension_context.py) and their definitions.
        An unknown modifier extension is an error when there are profiles: conformance cannot be shown."""
        issues: list[Issue] = []
        for profile in profiles:
            issues += self._validate(resource, profile, resolve, depth=0, extensions=False)
        ctx = _Context(resource, resolve, 0, strict_modifiers=bool(profiles))
        self._check_resource_extensions(resource, ctx)
        return issues + ctx.issues

    def tree(self, profile: str) -> ElementNode | None:
        if profile not in self._trees:
            sd = self.conformance.structure_definition(profile)
            self._trees[profile] = None if sd is None else build_tree(
                sd, lambda vs: vs.split("|")[0] in REQUIRED_VALUE_SETS, self.core_invariants)
        return self._trees[profile]

    # --- walk ---------------------------------------------------------------------------------------------
    def _validate(self, resource: Json, profile: str, resolve: Resolver | None, depth: int,
                  extensions: bool = True) -> list[Issue]:
        root = self.tree(profile)
        rtype = resource.get("resourceType", "")
        if root is None:
            return [Issue("error", "not-found", f"unknown profile {profile}", (rtype,) if rtype else ())]
        if root.path != rtype:
            return [Issue("error", "invalid", f"{profile} constrains {root.path}, not {rtype}", (rtype,))]
        ctx = _Context(resource, resolve, depth)
        self._check_node_value(_Value(resource, rtype, rtype), root, ctx, root.path)
        self._walk(resource, root, rtype, ctx)
        if extensions:
            self._check_resource_extensions(resource, ctx)
        return ctx.issues

    def _walk(self, obj: Json, node: ElementNode, path: str, ctx: _Context) -> None:
        """Check the children of ``node`` in the JSON object ``obj`` (at FHIRPath ``path``)."""
        for child in node.children:
            if child.inert:
                continue
            if (child.silent_when_absent and not child.is_choice and child.name not in obj
                    and child.shadow_key not in obj):
                continue  # absent, and its absence breaks nothing: no values, no issue (``_check_element``)
            values = self._values(obj, child, path)
            self._check_element(values, child, ctx, path)

    def _values(self, obj: Json, node: ElementNode, path: str) -> list[_Value]:
        if node.is_choice:
            base = node.name[:-3]
            keys = [k for k in obj if k.startswith(base) and k[len(base):len(base) + 1].isupper()]
        else:
            keys = [node.name] if node.name in obj or node.shadow_key in obj else []
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
            self._check_binding(value, type_code, node.binding, ctx, path, of_choice=node.is_choice)
        if type_code == "Reference" and isinstance(value, dict):
            self._check_reference(value, node, ctx, path)
        for constraint in node.constraints:
            self._check_constraint(value, type_code, constraint, node, ctx, path)

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
        types = self._referenced_types(ctx)
        for v in values:
            chosen = next((s for s in node.slices if _in_slice(v, s, node, types)), None)
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

    # --- bindings -----------------------------------------------------------------------------------------
    def _check_binding(self, value: Any, type_code: str, binding: tuple[str, str], ctx: _Context,
                       path: str, of_choice: bool = False) -> None:
        strength, vs = binding
        codings = _codings(value, type_code)
        if type_code == "Quantity" and not any(c for _, c in codings):
            return  # a quantity without a coded unit: nothing to bind
        try:
            membership = self.terminology.membership(vs)
        except ExpansionError as e:
            # A required binding we cannot evaluate is worth a warning; an extensible one to a value set the
            # server does not hold (e.g. core R4 bindings such as data-absent-reason) would only be noise on
            # every write (extensible: codes from elsewhere are allowed anyway, terminologies.html#extensible).
            if strength == "required":
                ctx.add("warning", "not-supported", f"value set {vs} cannot be evaluated: {e}", path)
            return
        if type_code == "Quantity" and of_choice and not _has_unit_system(membership, codings):
            # On a choice of types (CodeableConcept | Quantity), a value set without the quantity's unit system
            # binds the coded type only: applied to a unit it could never be met.
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
        """Whether a referenced resource conforms to ``profile``. At the last reference depth the answer depends
        on the resource's content alone (its own references are checked by type, not resolved), so it is
        remembered by content: every entry of a registry Bundle references the same Patient (issue #14)."""
        depth = ctx.depth + 1
        if depth < self.max_reference_depth:
            return self._conforms(resource, profile, ctx.resolve, depth)
        key = (profile, fhirjson.dumps(resource))
        known = self._conformance.get(key)
        if known is None:
            if len(self._conformance) >= CONFORMANCE_MEMO:
                self._conformance.clear()
            known = self._conformance[key] = self._conforms(resource, profile, ctx.resolve, depth)
        return known

    def _conforms(self, resource: Json, profile: str, resolve: Resolver | None, depth: int) -> bool:
        issues = self._validate(resource, profile, resolve, depth)
        return not any(i.severity in ("error", "fatal") for i in issues)

    def _referenced_types(self, ctx: _Context) -> TypeReader:
        """How a ``type`` discriminator reads types below a slice: a resource's own type, and through
        ``resolve()`` the type of the resource a reference names (contained, resolved, or read off its URL);
        a slice's admitted types are those of its element's types and profiles."""
        def read(value: Any, through_reference: bool) -> str | None:
            if not isinstance(value, dict):
                return None
            if not through_reference:
                rtype = value.get("resourceType")
                return rtype if isinstance(rtype, str) else None
            reference = value.get("reference")
            if not isinstance(reference, str):
                return None
            resolved = self._resolve(reference, ctx)
            return resolved.get("resourceType") if resolved is not None else _reference_type(reference)

        def admitted(node: ElementNode, through_reference: bool) -> set[str]:
            profiles = [p for t in node.types for p in (t.target_profiles if through_reference else t.profiles)]
            return {self._type_of_profile(p) for p in profiles} or {t.code for t in node.types}

        return TypeReader(read, admitted)

    def _type_of_profile(self, profile: str) -> str:
        sd = self.conformance.structure_definition(profile)
        return sd["type"] if sd is not None else profile.rsplit("/", 1)[-1]

    # --- invariants ---------------------------------------------------------------------------------------
    def _check_constraint(self, value: Any, type_code: str | None, constraint: Constraint, node: ElementNode,
                          ctx: _Context, path: str) -> None:
        primitive = type_code if type_code in _PRIMITIVES else None
        # compiled for the element's type when it has one of its own (a resource, a backbone element): the native
        # subset then knows what the paths are, dates among them (ordered as dates, not strings)
        focus_type = node.path if node.path in TYPES else None
        try:
            result = expression(constraint.expression, focus_type).evaluate(
                value, ctx.root, node.path.replace("[x]", ""), primitive)
        except Exception as e:  # a broken invariant must not take the write path down
            ctx.add("warning", "processing", f"invariant {constraint.key} could not be evaluated: {e}", path)
            return
        if result and not all(r is True for r in result):
            severity = "error" if constraint.severity == "error" else "warning"
            ctx.add(severity, "invariant", f"{constraint.key}: {constraint.human}", path)

    # --- extensions ---------------------------------------------------------------------------------------
    def _check_resource_extensions(self, resource: Json, ctx: _Context) -> None:
        """Every extension in the resource: where it is used, and its definition when the server holds it."""
        for site in extension_sites(resource):
            url = site.extension.get("url")
            if not isinstance(url, str):
                continue
            self._check_extension_use(url, site.key, site.host, site.path, ctx)
            sd = self.conformance.structure_definition(url)
            root = self.tree(url) if sd is not None and sd.get("type") == "Extension" else None
            if root is not None:
                self._check_node_value(_Value(site.extension, site.key, site.path), root, ctx, site.path)
                self._walk(site.extension, root, site.path, ctx)

    def _check_extension_use(self, url: str, key: str, host: Host, path: str, ctx: _Context) -> None:
        use = self.extension_uses.get(url)
        if use is None:
            if key == "modifierExtension" and ctx.strict_modifiers:
                ctx.add("error", "extension", f"unknown modifier extension {url}", path)
            return
        if use.modifier and key == "extension":
            ctx.add("error", "structure", f"extension {url} is a modifier extension: it belongs in "
                    "modifierExtension", path)
        elif not use.modifier and key == "modifierExtension":
            ctx.add("error", "structure", f"extension {url} is not a modifier extension: it belongs in "
                    "extension", path)
        if not allows(use, host):
            where = ".".join(host.parts)
            ctx.add("error", "structure", f"extension {url} is not allowed on {where} (context: "
                    f"{use.describe()})", path)
        for rule in broken_invariants(use, host):
            ctx.add("error", "invariant", f"extension {url} is not allowed here: its context invariant {rule!r} "
                    f"is false of {'.'.join(host.parts)}", path)


def _codings(value: Any, type_code: str) -> list[tuple[str | None, Any]]:
    if type_code == "code":
        return [(None, value)]
    if type_code in ("Coding", "Quantity"):
        return [(value.get("system"), value.get("code"))] if isinstance(value, dict) else []
    coding = value.get("coding", []) if isinstance(value, dict) else []
    return [(c.get("system"), c.get("code")) for c in coding if isinstance(c, dict)]


def _has_unit_system(membership: Any, codings: list[tuple[str | None, Any]]) -> bool:
    systems = {k[0] for k in membership.entries} | membership.open_systems
    return any(s in systems for s, _ in codings)


def _reference_type(reference: str) -> str | None:
    m = REFERENCE_TYPE.search(reference)
    return m.group(1) if m else None


@dataclass(frozen=True)
class TypeReader:
    """A ``type`` discriminator below ``$this``: ``read(value, through_reference)`` gives the type of a value
    (of the resource a Reference names, through ``resolve()``); ``admitted(node, through_reference)`` the types
    a slice's element admits."""

    read: Callable[[Any, bool], str | None]
    admitted: Callable[[ElementNode, bool], set[str]]


def _in_slice(v: _Value, slice_node: ElementNode, sliced: ElementNode, types: TypeReader) -> bool:
    """Whether a value belongs to a slice, by the sliced element's discriminators (profiling.html#discriminator)."""
    for d in sliced.discriminators:
        if d.type == "type":
            if d.path == "$this":
                matched = _type_matches(v, slice_node, sliced)
            else:
                matched = _type_below_matches(v, slice_node, d.path, types)
            if not matched:
                return False
            continue
        target = _descend(slice_node, d.path.split("."))
        actual = _select(v.value, d.path)
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


def _type_matches(v: _Value, slice_node: ElementNode, sliced: ElementNode) -> bool:
    """``type`` discriminator on ``$this``: the value's type (from its JSON name for a choice, e.g.
    ``valueQuantity``) is one of the slice's types. Paths below it: :func:`_type_below_matches`."""
    if sliced.is_choice:
        actual: str | None = _json_type_of_key(v.key, sliced.name[:-3])
    elif isinstance(v.value, dict) and "resourceType" in v.value:
        actual = v.value["resourceType"]
    else:
        actual = sliced.types[0].code if len(sliced.types) == 1 else None
    return actual in {t.code for t in slice_node.types}


def _type_below_matches(v: _Value, slice_node: ElementNode, path: str, types: TypeReader) -> bool:
    """``type`` discriminator on a path below the slice (profiling.html#discriminator): ``resource`` (a Bundle
    entry's), or ``item.resolve()`` (the type of the resource a reference names, against the slice's target
    profiles)."""
    through_reference = path == "resolve()" or path.endswith(".resolve()")
    element_path = path.removesuffix("resolve()").removesuffix(".") or "$this"
    target = _descend(slice_node, element_path.split("."))
    if target is None:
        return False
    allowed = types.admitted(target, through_reference)
    return any(types.read(item, through_reference) in allowed for item in _select(v.value, element_path))


def _descend(node: ElementNode, parts: list[str]) -> ElementNode | None:
    """The element at a discriminator path below a slice (``$this``, ``system``, ``code.coding.code``...).

    Where the path crosses a sliced element whose own child fixes nothing, the required slices are looked
    into: a blood pressure's ``component:SystolicBP`` is told by ``code.coding.code``, fixed only in the
    ``code.coding:SBPCode`` slice (https://hl7.org/fhir/R4/bp.html)."""
    if not parts:
        return node
    if parts[0] == "$this":
        return _descend(node, parts[1:])
    child = node.child(parts[0])
    if child is None:
        return None
    found = _descend(child, parts[1:])
    if found is not None and (found.fixed is not None or found.pattern is not None):
        return found
    for required in (s for s in child.slices if s.min > 0):
        inner = _descend(required, parts[1:])
        if inner is not None and (inner.fixed is not None or inner.pattern is not None):
            return inner
    return found


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
