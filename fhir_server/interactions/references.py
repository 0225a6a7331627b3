"""Reference elements inside a resource: collect and rewrite (https://hl7.org/fhir/R4/references.html)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


def collect_references(node: Any, out: set[str]) -> set[str]:
    """Every ``Reference.reference`` string in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.add(value)
            else:
                collect_references(value, out)
    elif isinstance(node, list):
        for item in node:
            collect_references(item, out)
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
            else:
                new = rewrite_references(value, resolve)
                new = None if new is value else new
            if new is not None and new != value:
                changed = changed if changed is not None else dict(node)
                changed[key] = new
        return changed if changed is not None else node
    if isinstance(node, list):
        items = [rewrite_references(item, resolve) for item in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node
