"""The one name for a JSON object as parsed from FHIR JSON (:mod:`fhir_server.fhirjson`): a resource, a
datatype value, a bundle entry..."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
