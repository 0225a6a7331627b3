"""The Bundles the server answers with (https://hl7.org/fhir/R4/bundle.html): a searchset, history, batch- or
transaction-response or collection with no entry has no ``entry`` at all, since FHIR JSON has no empty arrays
(https://hl7.org/fhir/R4/json.html; the server refuses ``[]`` in what it receives for the same reason)."""

from __future__ import annotations

from typing import Any

from fhir_server.json_types import Json


def with_entries(bundle: Json, entries: list[Any]) -> Json:
    """``bundle`` with ``entry`` set to ``entries``, or without ``entry`` when there is none."""
    if entries:
        bundle["entry"] = entries
    else:
        bundle.pop("entry", None)
    return bundle
