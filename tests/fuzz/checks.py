"""What the fuzz tests require of every answer: no 5xx, exact round trips, OperationOutcomes naming the element."""

from __future__ import annotations

import re
from typing import Any

import httpx

from fhir_server import fhirjson

SERVER_META = ("versionId", "lastUpdated")


def canonical(value: Any) -> bytes:
    """The JSON text of ``value`` with object keys sorted: equal bytes mean an equal resource, number text
    included (``1.50`` is not ``1.5``, ``true`` is not ``1``)."""
    return fhirjson.dumps(_sorted(value))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    """The stored resource minus what the server owns: ``id``, ``meta.versionId``, ``meta.lastUpdated``
    (as tests/api/test_round_trip.py compares HL7's examples)."""
    out = {key: value for key, value in resource.items() if key != "id"}
    meta = {key: value for key, value in (out.pop("meta", None) or {}).items() if key not in SERVER_META}
    if meta:
        out["meta"] = meta
    return out


def assert_not_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.request.method} {response.request.url}: {response.text[:2000]}"


def outcome_of(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, f"expected a 4xx, got {response.status_code}: {response.text[:2000]}"
    outcome = fhirjson.loads(response.content)
    assert outcome["resourceType"] == "OperationOutcome", response.text[:2000]
    return outcome  # type: ignore[no-any-return]


def _unindexed(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def names_element(outcome: dict[str, Any], *paths: str) -> bool:
    """True when an issue of ``outcome`` names the element at ``path`` (``Patient.name[0].given[1]``): in its
    expression or location, or in its diagnostics. A deeper path names it too (``...given[1]`` names
    ``...given``), and so does the path written without list indices."""
    wanted = [*paths, *map(_unindexed, paths)]
    for issue in outcome.get("issue", []):
        if issue.get("severity") not in ("error", "fatal"):
            continue
        texts = [*issue.get("expression", []), *issue.get("location", []), issue.get("diagnostics", "")]
        for text in texts:
            if any(w in text or w in _unindexed(text) for w in wanted):
                return True
    return False


def assert_names_element(response: httpx.Response, kind: str, *paths: str) -> None:
    """``response`` is a 4xx OperationOutcome with an issue naming one of ``paths``."""
    outcome = outcome_of(response)
    assert names_element(outcome, *paths), f"{kind}: no issue names {paths}: {fhirjson.dumps(outcome)[:2000]!r}"
