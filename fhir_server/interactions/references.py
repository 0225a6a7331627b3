"""Reference elements inside a resource: collect, rewrite, and say which Bundle entry a reference names
(https://hl7.org/fhir/R4/references.html, https://hl7.org/fhir/R4/bundle.html#references); and the other links
to an entry a transaction rewrites (https://hl7.org/fhir/R4/http.html#trules)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server.json_types import reference_strings
from fhir_server.validation.primitives import COMPLEX, PRIMITIVE, RESOURCE, TYPES, TypeInfo

RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_RESTFUL = re.compile(r"^(https?://.+)/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")  # [base]/[type]/[id]
_VERSIONED = re.compile(r"^(.+)/_history/([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class BundleReference:
    """What a literal reference inside a Bundle names: the absolute URL an entry's ``fullUrl`` would carry,
    and the version when the reference is version-specific."""

    url: str
    version: str | None = None


def bundle_reference(reference: str, referrer_full_url: str | None, server_base: str) -> BundleReference | None:
    """The absolute URL ``reference``, found in the entry whose fullUrl is ``referrer_full_url``, names
    (bundle.html#references): a version-specific reference loses its version for the match; an absolute URL
    names itself; a relative ``Type/id`` is relative to the base of a RESTful fullUrl (``[base]/Type/id``) of the
    entry holding it, otherwise (a ``urn:uuid`` fullUrl, or none) to this server's base. None for what cannot
    name an entry: a contained ``#id``, a conditional ``Type?criteria``, anything else."""
    versioned = _VERSIONED.match(reference)
    url, version = versioned.groups() if versioned else (reference, None)
    if url.startswith(("http://", "https://", "urn:")):
        return BundleReference(url, version)
    if RELATIVE.match(url):
        restful = _RESTFUL.match(referrer_full_url or "")
        base = restful.group(1) if restful else server_base
        return BundleReference(f"{base}/{url}", version)
    return None


def collect_references(node: Any, out: set[str]) -> set[str]:
    """Every ``Reference.reference`` string in ``node``, added to ``out``."""
    out.update(reference_strings(node))
    return out


def rewrite_references(node: Any, resolve: Callable[[str], str | None]) -> Any:
    """``node`` with every ``Reference.reference`` for which ``resolve`` gives a new value replaced.

    Copy on write: ``node`` is never changed; unchanged subtrees are shared with the result.
    """
    if isinstance(node, dict):
        changed: dict[str, Any] | None = None
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                new = resolve(value)
            elif isinstance(value, (dict, list)):  # a scalar other than a reference is kept as it is
                new = rewrite_references(value, resolve)
                new = None if new is value else new
            else:
                continue
            if new is not None and new != value:
                changed = changed if changed is not None else dict(node)
                changed[key] = new
        return changed if changed is not None else node
    if isinstance(node, list):
        items = [rewrite_references(item, resolve) if isinstance(item, (dict, list)) else item for item in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node


# http.html#trules: a transaction's server "SHALL replace all matching links in the bundle, whether they are found
# in [...] resource references, elements of type uri, url, oid, uuid, and <a href="" & <img src="" in the
# narrative. Elements of type canonical are not replaced." The type decides, not the value: an Identifier.value
# (a string) that holds an entry's ``urn:uuid`` is the sender's identifier and stays.
LINK_TYPES = frozenset({"uri", "url", "oid", "uuid"})
_NARRATIVE_LINK = re.compile(r"""(\b(?:href|src)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE)


def rewrite_links(resource: dict[str, Any], targets: Mapping[str, str]) -> dict[str, Any]:
    """``resource`` with every uri, url, oid or uuid element, and every narrative ``href``/``src``, whose value
    is a key of ``targets`` (an entry's fullUrl) replaced by its value (``Type/id``). ``resource`` itself is
    never changed; when nothing names a target (nearly always), it is returned as it is, after one untyped scan."""
    if not targets or not _mentions(resource, targets):
        return resource
    rewritten = copy.deepcopy(resource)
    info = TYPES.get(rewritten.get("resourceType", ""))
    if info is not None and info.is_resource:
        _rewrite_typed(rewritten, info, targets)
    return rewritten


def _mentions(node: Any, targets: Mapping[str, str]) -> bool:
    """Whether any string of ``node`` but a ``Reference.reference`` (rewritten on its own) is, or any
    narrative link names, a key of ``targets``: an untyped scan as cheap as ``reference_strings``, whose walk it
    repeats rather than shares (a generator of string fields shared by both made ``reference_strings``, run several
    times per write, 4.8 -> 8.0 us a resource)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str):
                    if key != "reference" and (value in targets or (key == "div" and _names_target(value, targets))):
                        return True
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _names_target(div: str, targets: Mapping[str, str]) -> bool:
    return any(match.group(3) in targets for match in _NARRATIVE_LINK.finditer(div))


def _rewrite_typed(obj: dict[str, Any], info: TypeInfo, targets: Mapping[str, str]) -> None:
    """Replace, in place, the links of ``obj`` (an object of the type ``info`` describes) that name a target."""
    for name, value in obj.items():
        row = info.rows.get(name)
        if row is None:
            continue
        items = value if row.is_array and isinstance(value, list) else [value]
        if row.kind == PRIMITIVE:
            replaced = [_replaced(item, row.target, targets) for item in items]
            obj[name] = replaced if row.is_array and isinstance(value, list) else replaced[0]
            continue
        for item in items:
            if not isinstance(item, dict):
                continue
            if row.kind == COMPLEX:
                _rewrite_typed(item, TYPES[row.target], targets)
            elif row.kind == RESOURCE:  # a contained resource
                contained = TYPES.get(item.get("resourceType", ""))
                if contained is not None and contained.is_resource:
                    _rewrite_typed(item, contained, targets)


def _replaced(value: Any, primitive: str, targets: Mapping[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    if primitive in LINK_TYPES:
        return targets.get(value, value)
    if primitive == "xhtml":
        return _NARRATIVE_LINK.sub(
            lambda m: f"{m.group(1)}{m.group(2)}{targets.get(m.group(3), m.group(3))}{m.group(2)}", value)
    return value
