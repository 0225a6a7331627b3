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
    """Replace every ``Reference.reference`` for which ``resolve`` gives a new value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                new = resolve(value)
                if new is not None:
                    node[key] = new
            else:
                rewrite_references(value, resolve)
    elif isinstance(node, list):
        for item in node:
            rewrite_references(item, resolve)
    return node
