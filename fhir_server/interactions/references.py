"""Reference elements inside a resource: collect, rewrite, and say which Bundle entry a reference names
(https://hl7.org/fhir/R4/references.html, https://hl7.org/fhir/R4/bundle.html#references)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.json_types import reference_strings

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
