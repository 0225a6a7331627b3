"""HL7's validator test suite, its R4 cases with profiles (the public repository FHIR/fhir-test-cases,
``validator/``, copied in ``tests/data/fhir-validator/profiles/``), over HTTP as a terminology maintainer and an EHR
would meet them: the case's definitions (profiles, extension definitions, value sets) are published to the server,
the Patients a case's references name are stored, then the input is posted to ``[type]/$validate`` -- without a
profile, and with the case's profile as the ``profile`` parameter. The server must refuse exactly what HL7's Java
validator refuses in each of the two (the suite's ``java`` and ``profile.java`` expectations).

The suite's definitions predate R4's rules for definitions: most lack the ``name`` R4 requires (1..1) and ids on
their element definitions (sdf-14), and the server refuses to publish a definition that breaks R4. They are
completed as an author would (:func:`completed`: a name from the id, each element's id from its path) and nothing
else is changed. Where the server judges otherwise on purpose, :data:`JUDGED_OTHERWISE` says why.

The cases found: an extension's context was not matched on the elements a resource inherits (``DomainResource.text``
for ``Patient.text``), a published extension's ``contextInvariant`` was not evaluated, a new slice inherited its
sliced element's minimum, and a ``type`` discriminator could not read below ``$this`` or through ``resolve()``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.xml_format import resource_from_xml
from tests.conftest import parse, put

SUITE = Path(__file__).resolve().parents[1] / "data" / "fhir-validator" / "profiles"
DEFINITIONS = ("StructureDefinition", "ValueSet", "CodeSystem")

# (case, "base" | "profile") -> (refused here, why)
JUDGED_OTHERWISE: dict[tuple[str, str], tuple[bool, str]] = {
    ("type-ref-unchecked", "profile"): (
        True, "the server reads the type a literal reference names (Group/12345) and holds it against the profile's "
              "target types, as the reference validator does in its assumeValidRestReferences mode (type-ref-checked)"),
}

# Cases that cannot run as the suite has them: case -> why.
NOT_RUN: dict[str, str] = {
    "member-of-CC-good": "its profile declares a contextInvariant, which R4's sdf-18 allows on extensions only: the "
                         "server refuses to publish it",
    "member-of-CC-bad": "the same profile",
}


@dataclass(frozen=True)
class ProfileCase:
    name: str
    file: str
    definitions: tuple[str, ...]  # published before validating, in order
    profile: str | None  # the file of the profile the second validation names
    refused_base: bool
    refused_with_profile: bool | None


def load_cases() -> list[ProfileCase]:
    manifest = json.loads((SUITE / "manifest-r4-profiles.json").read_text(encoding="utf-8"))
    cases = []
    for c in manifest["test-cases"]:
        profile = c.get("profile") or {}
        files = [*c.get("supporting", []), *c.get("profiles", []), *profile.get("supporting", [])]
        if profile:
            files.append(profile["source"])
        cases.append(ProfileCase(
            c["name"], c["file"], tuple(dict.fromkeys(files)), profile.get("source"),
            (c.get("java", {}).get("errorCount") or 0) > 0,
            None if not profile else (profile.get("java", {}).get("errorCount") or 0) > 0))
    return cases


def read(name: str) -> dict[str, Any]:
    content = (SUITE / name).read_bytes()
    return json.loads(content) if name.endswith(".json") else resource_from_xml(content)


def completed(definition: dict[str, Any], file: str) -> dict[str, Any]:
    """A definition with what R4 requires of it, or a server needs to store it, and the suite's copy lacks: an id
    (its file's name), a ``name`` (derived from its id) and an ``id`` on every element definition (its path, and
    ``:sliceName`` for a slice)."""
    definition.setdefault("id", file.rsplit(".", 1)[0])
    if "name" not in definition:
        definition["name"] = "".join(ch for ch in definition.get("id", "Test").title() if ch.isalnum())
    for part in ("differential", "snapshot"):
        for element in (definition.get(part) or {}).get("element", []):
            sliced = f":{element['sliceName']}" if "sliceName" in element else ""
            element.setdefault("id", element["path"] + sliced)
    return definition


CASES = load_cases()
# the Patients the cases' references name, each other among them (the reference validator fetches them from the
# suite's folder): every Patient of the patient-circle cases
REFERENCED = sorted(p.name for p in SUITE.glob("patient-circle*.xml") if "-profile" not in p.name)


@pytest.fixture(scope="module")
async def referenced_patients(client: httpx.AsyncClient) -> AsyncIterator[None]:
    stored = []
    for name in REFERENCED:
        patient = read(name)
        r = await put(client, f"Patient/{patient['id']}", patient)
        assert r.status_code in (200, 201), r.text
        stored.append(patient["id"])
    yield
    for ident in stored:
        await client.delete(f"/fhir/Patient/{ident}")


async def publish(client: httpx.AsyncClient, name: str) -> tuple[str, str]:
    definition = completed(read(name), name)
    path = f"{definition['resourceType']}/{definition['id']}"
    r = await put(client, path, definition)
    assert r.status_code in (200, 201), (name, r.text)
    return path, str(definition.get("url", ""))


async def refused(client: httpx.AsyncClient, case: ProfileCase, profile_url: str | None) -> tuple[bool, list[str]]:
    resource = read(case.file)
    query = f"?profile={urllib.parse.quote(profile_url, safe='')}" if profile_url else ""
    media = "application/fhir+xml" if case.file.endswith(".xml") else "application/fhir+json"
    r = await client.post(f"/fhir/{resource['resourceType']}/$validate{query}",
                          content=(SUITE / case.file).read_bytes(),
                          headers={"Content-Type": media, "Accept": "application/fhir+json"})
    assert r.status_code in (200, 400), r.text
    errors = [i.get("diagnostics", "") for i in parse(r)["issue"] if i["severity"] in ("error", "fatal")]
    return r.status_code == 400 or bool(errors), errors


def expected(case: ProfileCase, which: str, reference_validator: bool) -> bool:
    return JUDGED_OTHERWISE[(case.name, which)][0] if (case.name, which) in JUDGED_OTHERWISE else reference_validator


@pytest.mark.usefixtures("referenced_patients")
@pytest.mark.parametrize("case", [c for c in CASES if c.name not in NOT_RUN], ids=lambda c: c.name)
async def test_the_server_judges_a_profiled_case_as_the_reference_validator(client: httpx.AsyncClient,
                                                                           case: ProfileCase) -> None:
    published = [await publish(client, name) for name in case.definitions]
    try:
        urls = dict(zip(case.definitions, (url for _, url in published), strict=True))
        refused_base, errors = await refused(client, case, None)
        assert refused_base == expected(case, "base", case.refused_base), errors
        if case.profile is not None:
            assert case.refused_with_profile is not None
            refused_profiled, errors = await refused(client, case, urls[case.profile])
            assert refused_profiled == expected(case, "profile", case.refused_with_profile), errors
    finally:
        for path, _ in published:
            await client.delete(f"/fhir/{path}")


def test_the_copy_holds_the_cases_and_every_exception_is_one_of_them() -> None:
    names = {c.name for c in CASES}
    assert len(CASES) == 40 and set(NOT_RUN) <= names and {n for n, _ in JUDGED_OTHERWISE} <= names
    assert all((SUITE / f).is_file() for c in CASES for f in (c.file, *c.definitions))
    by_name = {c.name: c for c in CASES}
    for (name, which), (judged, _why) in JUDGED_OTHERWISE.items():
        suite = by_name[name].refused_base if which == "base" else by_name[name].refused_with_profile
        assert judged != suite
