"""FHIR's own FHIRPath Patch test cases (https://hl7.org/fhir/R4/fhirpatch.html; the public repository
FHIR/fhir-test-cases, ``r4/patch/fhir-patch-tests.xml``, copied in ``tests/data/fhirpath-patch/``), over HTTP as an
EHR would send them: each case's input Patient is created in XML, its diff sent as a FHIRPath Patch in XML, and the
patched resource must be the case's output (less ``id`` and ``meta``, which are the server's). The one case whose
answer is an error ("No content found ... when adding") is a 422 that changes nothing. Two outputs break R4's own
pat-1 (a Patient contact with neither details nor an organization): the server refuses to store them (400, as any
update breaking an invariant), and the patch alone, applied in-process, must still give the output.

A case of mode ``both`` also tests diff generation, which is not a server feature: every case is applied forwards.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.interactions.fhirpath_patch import parse_fhirpath_patch
from fhir_server.validation.core_invariants import core_invariant_issues
from fhir_server.xml_format import resource_from_xml
from tests.conftest import parse

SUITE = Path(__file__).resolve().parents[1] / "data" / "fhirpath-patch" / "fhir-patch-tests.xml"
FHIR_NS = "http://hl7.org/fhir"
FHIR_XML = "application/fhir+xml"


@dataclass(frozen=True)
class PatchCase:
    name: str
    input: bytes
    diff: bytes
    output: bytes | None  # None: the case expects an error
    error: str | None


def _resource_bytes(holder: ElementTree.Element | None) -> bytes | None:
    if holder is None:
        return None
    [resource] = list(holder)
    return ElementTree.tostring(resource, encoding="utf-8")


def load_cases() -> list[PatchCase]:
    ElementTree.register_namespace("", FHIR_NS)  # the resources keep the FHIR namespace as their default
    cases = []
    for case in ElementTree.parse(SUITE).getroot().iter("case"):
        error = case.find("error")
        input_bytes, diff = _resource_bytes(case.find("input")), _resource_bytes(case.find("diff"))
        assert input_bytes is not None and diff is not None
        cases.append(PatchCase(case.get("name", ""), input_bytes, diff, _resource_bytes(case.find("output")),
                               None if error is None else error.get("msg")))
    return cases


CASES = load_cases()


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


async def create(client: httpx.AsyncClient, case: PatchCase) -> dict[str, Any]:
    created = await client.post("/fhir/Patient", content=case.input,
                                headers={"Content-Type": FHIR_XML, "Prefer": "return=representation"})
    assert created.status_code == 201, created.text
    return dict(parse(created))


async def patch(client: httpx.AsyncClient, ident: str, case: PatchCase) -> httpx.Response:
    return await client.patch(f"/fhir/Patient/{ident}", content=case.diff,
                              headers={"Content-Type": FHIR_XML, "Accept": "application/fhir+json"})


def broken_invariants(resource: dict[str, Any]) -> list[str]:
    return [i.diagnostics for i in core_invariant_issues(resource) if i.severity == "error"]


@pytest.mark.parametrize("case", [c for c in CASES if c.output is not None], ids=lambda c: c.name)
async def test_each_fhir_patch_case_gives_its_output(client: httpx.AsyncClient, case: PatchCase) -> None:
    assert case.output is not None
    expected = without_server_fields(resource_from_xml(case.output))
    patched = parse_fhirpath_patch(resource_from_xml(case.diff)).apply(resource_from_xml(case.input))
    assert without_server_fields(patched) == expected
    created = await create(client, case)
    response = await patch(client, created["id"], case)
    read = await client.get(f"/fhir/Patient/{created['id']}")
    if broken := broken_invariants(expected):
        assert response.status_code == 400 and broken[0] in parse(response)["issue"][0]["diagnostics"]
        assert parse(read)["meta"]["versionId"] == "1"
        return
    assert response.status_code == 200, response.text
    assert without_server_fields(parse(response)) == expected
    assert without_server_fields(parse(read)) == expected


@pytest.mark.parametrize("case", [c for c in CASES if c.output is None], ids=lambda c: c.name)
async def test_a_fhir_patch_case_expecting_an_error_is_422(client: httpx.AsyncClient, case: PatchCase) -> None:
    created = await create(client, case)
    response = await patch(client, created["id"], case)
    assert response.status_code == 422, response.text
    assert "selects 0 elements" in parse(response)["issue"][0]["diagnostics"]  # the case: "No content found"
    read = await client.get(f"/fhir/Patient/{created['id']}")
    assert parse(read)["meta"]["versionId"] == "1"


def test_the_suite_is_read_whole() -> None:
    assert len(CASES) == 33
    assert [c.name for c in CASES if c.output is None] == ["Operation on missing element"]
    invalid = [c.name for c in CASES if c.output is not None and broken_invariants(resource_from_xml(c.output))]
    assert invalid == ["Delete Nested Primitive #2", "Consecutive operations"]
