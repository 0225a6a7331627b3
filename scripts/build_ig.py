"""Build the IFP registry's implementation guide package (FHIR NPM package format).

1. Regenerates the snapshot of every StructureDefinition in ``profiles/`` from its differential and the R4 base
   (https://hl7.org/fhir/R4/profiling.html#snapshot) and writes it back into the file.
2. Regenerates ``profiles/ImplementationGuide-ifp.json`` listing every conformance resource.
3. Writes ``package.tgz`` with ``package/package.json``, ``package/.index.json`` and every resource
   (https://confluence.hl7.org/display/FHIR/NPM+Package+Specification).

Usage: ``python scripts/build_ig.py [--out package.tgz] [--check]``; ``--check`` only reports stale snapshots.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.json_types import Json  # noqa: E402
from fhir_server.validation.core import core_definitions  # noqa: E402
from fhir_server.validation.snapshot import generate_snapshot  # noqa: E402

PROFILES = ROOT / "profiles"
BASE = "https://cml-registry.eu/fhir"
PACKAGE = "eu.cml-registry.ifp"
VERSION = "0.1.0"


def load_resources() -> dict[Path, Json]:
    return {p: json.loads(p.read_text()) for p in sorted(PROFILES.glob("*.json"))
            if p.name != "rules.json" and not p.name.startswith("ImplementationGuide-")}


def dump(resource: Json) -> str:
    return json.dumps(resource, indent=2, ensure_ascii=False) + "\n"


def with_snapshots(resources: dict[Path, Json]) -> dict[Path, Json]:
    """Every StructureDefinition with a freshly generated snapshot (profiles may build on each other)."""
    by_url = {r["url"]: r for r in resources.values() if r["resourceType"] == "StructureDefinition"}
    core = core_definitions()

    def resolve(url: str) -> Json | None:
        url = url.split("|")[0]
        if url in by_url:
            sd = by_url[url]
            return sd if "snapshot" in sd else generate_snapshot(sd, resolve)
        return core.get(url)

    out: dict[Path, Json] = {}
    for path, res in resources.items():
        if res["resourceType"] == "StructureDefinition":
            source = {k: v for k, v in res.items() if k != "snapshot"}
            res = generate_snapshot(source, resolve)
            by_url[res["url"]] = res
        out[path] = res
    return out


def implementation_guide(resources: list[Json]) -> Json:
    entries = [{"reference": {"reference": f"{r['resourceType']}/{r['id']}"}, "name": r.get("title") or r["name"],
                "description": r.get("description", ""), "exampleBoolean": False} for r in resources]
    return {
        "resourceType": "ImplementationGuide", "id": "ifp", "url": f"{BASE}/ImplementationGuide/ifp",
        "version": VERSION, "name": "IfpRegistry", "title": "IFP registry implementation guide",
        "status": "active", "date": "2026-11-25",
        "publisher": "IFP registry (European registry of CML patients in failure after imatinib)",
        "description": "Profiles, terminology and search parameters of the European registry of CML patients "
                       "in failure after imatinib (data contract v0.1).",
        "packageId": PACKAGE, "license": "CC0-1.0", "fhirVersion": ["4.0.1"],
        "dependsOn": [{"id": "hl7_fhir_r4_core", "uri": "http://hl7.org/fhir/ImplementationGuide/hl7.fhir.r4.core",
                       "packageId": "hl7.fhir.r4.core", "version": "4.0.1"}],
        "definition": {"resource": entries},
    }


def package_json() -> Json:
    return {"name": PACKAGE, "version": VERSION, "description": "IFP registry FHIR R4 implementation guide",
            "author": "IFP registry", "fhirVersions": ["4.0.1"], "type": "fhir.ig", "license": "CC0-1.0",
            "canonical": BASE, "url": BASE, "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}


def index_json(files: dict[str, Json]) -> Json:
    keys = ("resourceType", "id", "url", "version", "kind", "type")
    return {"index-version": 1, "files": [{"filename": name, **{k: r[k] for k in keys if k in r}}
                                          for name, r in files.items()]}


def write_package(out: Path, files: dict[str, Json]) -> None:
    members = {"package/package.json": package_json(), "package/.index.json": index_json(files),
               **{f"package/{name}": r for name, r in files.items()}}
    with tarfile.open(out, "w:gz") as tar:
        for name, content in members.items():
            data = dump(content).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "package.tgz")
    parser.add_argument("--check", action="store_true", help="fail if a profile's snapshot is stale")
    args = parser.parse_args()
    resources = load_resources()
    built = with_snapshots(resources)
    ig = implementation_guide(list(built.values()))
    ig_path = PROFILES / "ImplementationGuide-ifp.json"
    stale = [p.name for p, r in built.items() if dump(r) != p.read_text()]
    if not ig_path.exists() or dump(ig) != ig_path.read_text():
        stale.append(ig_path.name)
    if args.check:
        print("stale: " + ", ".join(stale) if stale else "profiles are up to date")
        return 1 if stale else 0
    for path, res in built.items():
        path.write_text(dump(res))
    ig_path.write_text(dump(ig))
    files = {p.name: r for p, r in built.items()} | {ig_path.name: ig}
    write_package(args.out, files)
    print(f"{len(files)} resources -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
