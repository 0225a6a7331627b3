"""The set of conformance resources a validator works with.

A :class:`ConformanceSnapshot` holds StructureDefinitions (the R4 base ones and the R4 vital signs profiles
built in, plus the registry's or any published later) and a :class:`~fhir_server.terminology.Terminology` over
CodeSystems, ValueSets (the value sets of the vital signs profiles built in) and ConceptMaps, all keyed by
canonical url and ``url|version``
(https://hl7.org/fhir/R4/references.html#canonical).
The server builds one from storage and replaces it when a conformance resource changes; it is immutable after
construction, so it can be shared by concurrent requests.
"""

from __future__ import annotations

from collections.abc import Iterable

from fhir_server.json_types import Json
from fhir_server.terminology import Terminology, split_canonical
from fhir_server.terminology.core import core_terminology
from fhir_server.terminology.service import currency_key
from fhir_server.validation.core import core_definitions, vital_signs
from fhir_server.validation.snapshot import generate_snapshot

TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


class ConformanceSnapshot:
    """StructureDefinitions and terminology by canonical url (``url`` or ``url|version``).

    Several versions of one url may be held: a bare url resolves to the current one (highest ``active``
    version, see :func:`~fhir_server.terminology.service.currency_key`), ``url|version`` to that exact
    version. ``superseded`` resources (earlier versions replaced in storage) resolve only by ``url|version``.
    """

    def __init__(self, resources: Iterable[Json], include_core: bool = True,
                 superseded: Iterable[Json] = ()) -> None:
        resources = list(resources)
        superseded = list(superseded)
        self._sds: dict[str, Json] = {**core_definitions(), **vital_signs().profiles} if include_core else {}
        self._versioned: dict[str, Json] = {}
        registry_urls: set[str] = set()
        for r in resources:
            if r.get("resourceType") == "StructureDefinition" and r.get("url"):
                url = r["url"]
                held = self._sds.get(url)
                if url not in registry_urls or held is None or currency_key(r) >= currency_key(held):
                    self._sds[url] = r
                registry_urls.add(url)
                if r.get("version"):
                    self._versioned[f"{url}|{r['version']}"] = r
        for r in superseded:
            if r.get("resourceType") == "StructureDefinition" and r.get("url") and r.get("version"):
                self._versioned.setdefault(f"{r['url']}|{r['version']}", r)
        self._complete_snapshots()
        built_in = vital_signs().value_sets if include_core else ()
        own = [r for r in resources if r.get("resourceType") in TERMINOLOGY_TYPES]
        self.terminology = Terminology((*built_in, *own),
                                       (r for r in superseded if r.get("resourceType") in TERMINOLOGY_TYPES),
                                       core_terminology() if include_core else None)

    @classmethod
    def from_package_dir(cls, directory: str) -> ConformanceSnapshot:
        """Convenience for tests and tools: every ``*.json`` resource of a directory (e.g. ``profiles/``)."""
        import json
        from pathlib import Path

        files = sorted(Path(directory).glob("*.json"))
        loaded = (json.loads(p.read_text()) for p in files)
        return cls(r for r in loaded if isinstance(r, dict) and "resourceType" in r)

    def _complete_snapshots(self) -> None:
        """Generate the snapshot of StructureDefinitions published with a differential only."""
        for url, sd in list(self._sds.items()):
            if "snapshot" not in sd:
                self._sds[url] = self._with_snapshot(sd)

    def _with_snapshot(self, sd: Json) -> Json:
        """``sd`` with its snapshot generated (once: both indexes then hold the completed resource)."""
        done = generate_snapshot(sd, self.structure_definition)
        if sd.get("version"):
            key = f"{sd['url']}|{sd['version']}"
            if self._versioned.get(key) is sd:
                self._versioned[key] = done
        return done

    def kind_of(self, url: str) -> str | None:
        """The type of the definition held under the canonical ``url`` (R4's own included), or None: what a
        canonical naming it names (``validation/canonical_targets.py``)."""
        if url in self._sds:
            return "StructureDefinition"
        return next((kind for kind in TERMINOLOGY_TYPES if self.terminology.resource(kind, url) is not None), None)

    def structure_definitions(self) -> list[Json]:
        """The current version of every StructureDefinition held."""
        return list(self._sds.values())

    def structure_definition(self, canonical: str) -> Json | None:
        url, version = split_canonical(canonical)
        if version is not None:
            sd = self._versioned.get(canonical)
            if sd is not None and "snapshot" not in sd:
                sd = self._with_snapshot(sd)
            return sd
        sd = self._sds.get(url)
        if sd is not None and "snapshot" not in sd:
            sd = self._sds[url] = self._with_snapshot(sd)
        return sd
