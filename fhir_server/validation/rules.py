"""The registry's rule table: which profiles a resource must conform to (``profiles/rules.json``).

Each rule names a resourceType, a FHIRPath selector (https://hl7.org/fhir/R4/fhirpath.html, compiled once)
and a profile canonical url. A resource must conform to every profile whose rule selects it; profiles the
resource claims in ``meta.profile`` are the server's call (validation.html#profile).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fhir_server.fhirpath import expression, is_true
from fhir_server.json_types import Json


def load_rules(path: Path) -> list[Json]:
    """The rules of a rule table file (``{"rules": [...]}``)."""
    return list(json.loads(path.read_text())["rules"])


def profiles_required_for(resource: Mapping[str, Any], rules: Iterable[Mapping[str, Any]]) -> list[str]:
    """Canonical urls of the profiles ``resource`` must conform to, in rule order, without duplicates."""
    rtype = resource.get("resourceType")
    out: list[str] = []
    for rule in rules:
        if rule.get("resourceType") != rtype or rule["profile"] in out:
            continue
        if is_true(expression(rule.get("selector") or "true").evaluate(resource, resource)):
            out.append(rule["profile"])
    return out
