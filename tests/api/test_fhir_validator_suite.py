"""HL7's validator test suite (the public repository FHIR/fhir-test-cases, ``validator/``, copied in
``tests/data/fhir-validator/``), over HTTP: every R4 case that needs no profile, package or supporting file is
posted, in its own format (JSON or XML), to ``[type]/$validate`` of a plain server, and the server must find it
valid exactly when HL7's reference validator (the suite's ``java`` expectations) finds no error.

The suite describes one validator, with modes a server does not have: where the server judges otherwise on purpose,
:data:`JUDGED_OTHERWISE` says why; where a case needs what the copy cannot give (a terminology server, a mode of the
validator), :data:`NOT_RUN` says what. The cases found these, each fixed with a test of its own: R4's que-12 and tim-9
as their rules say, an extension's url absolute, an Attachment's size and hash, UUID and OID URNs, a Coding's system
and a canonical resource's url absolute, ``$validate`` of a Parameters resource, a paragraph inside a paragraph,
element ids repeated in a resource, a Coding's system naming a value set and a canonical naming a definition of
another type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import parse

SUITE = Path(__file__).resolve().parents[1] / "data" / "fhir-validator"
XML_ROOT = re.compile(rb"<([A-Za-z]+)[\s>/]")

# The server answers otherwise than the reference validator, on purpose: case -> (refused here, why).
JUDGED_OTHERWISE: dict[str, tuple[bool, str]] = {
    "bundle-duplicate-id": (True, "its RelatedPerson has no patient, 1..1 in R4 (relatedperson.html); the case "
                                  "is about entry ids and its expectation leaves the cardinality out"),
    "mni-patientOverview-bundle-example1": (True, "its Composition has \"section\": [], and json.html says an "
                                                  "array is never empty (the suite's own empty-array case refuses "
                                                  "one)"),
    "pat-dob-ext": (False, "an extension of an unknown url is allowed: extensibility.html lets a server ignore "
                           "what it cannot know, and the server judges every extension it knows (README)"),
    "pat-example-extensions": (False, "the same, and an example.org URL is data like any other (the validator's "
                                      "examples mode is off in the suite)"),
    "dr-example-org": (False, "the reference validator fetches the attachment's example.org URL, which does not "
                              "resolve; a server does not fetch what it stores"),
    "cs-bad-oid": (False, "an identifier of the system urn:ietf:rfc:3986 that is no URI is a warning here: three "
                          "of HL7's own R4 examples break the rule (tests/validation/test_primitives.py)"),
}

# Cases whose verdict rests on what the copy cannot provide: case -> what.
NOT_RUN: dict[str, str] = {
    "sct-version-issue": "a SNOMED CT edition the terminology server knows",
    "supplement-2": "LOINC's content, to see that a supplement's code is LOINC's",
    "parameters-reference-bad": "the validator's CHECK_EXISTS_AND_TYPE mode (references resolved)",
    "pat-security-bad-string1": "the validator's security-checks mode (HTML in any string refused)",
    "capstmt": "the CapabilityStatement checked against the SearchParameter definitions it names",
    "bundle-id-3": "a search result Bundle checked against the search it answers",
    "bundle-id-4": "a search result Bundle checked against the search it answers",
}


@dataclass(frozen=True)
class ValidatorCase:
    name: str
    file: str
    java_errors: int

    @property
    def source(self) -> Path:
        return SUITE / self.file

    @property
    def is_xml(self) -> bool:
        return self.file.endswith(".xml")

    def resource_type(self) -> str:
        content = self.source.read_bytes()
        if not self.is_xml:
            return str(json.loads(content)["resourceType"])
        body = content[content.find(b"?>") + 2:] if content.startswith(b"<?xml") else content
        found = XML_ROOT.search(body)
        assert found is not None, self.file
        return found.group(1).decode()


def load_cases(manifest_name: str) -> list[ValidatorCase]:
    manifest = json.loads((SUITE / manifest_name).read_text(encoding="utf-8"))
    return [ValidatorCase(c["name"], c["file"], int(c["java"]["errorCount"] or 0)) for c in manifest["test-cases"]]


# the R4 cases, and five of the suite's current version whose inputs are R4 as they stand (a nested paragraph,
# repeated element ids, R4's org-2 and org-3)
CASES = load_cases("manifest-r4.json") + load_cases("manifest-r4-compatible.json")
RUN = [c for c in CASES if c.name not in NOT_RUN]


def refused_by_reference_validator(case: ValidatorCase) -> bool:
    return case.java_errors > 0


async def validate(client: httpx.AsyncClient, case: ValidatorCase) -> tuple[int, list[dict[str, Any]]]:
    media = "application/fhir+xml" if case.is_xml else "application/fhir+json"
    r = await client.post(f"/fhir/{case.resource_type()}/$validate", content=case.source.read_bytes(),
                          headers={"Content-Type": media, "Accept": "application/fhir+json"})
    return r.status_code, [i for i in parse(r)["issue"] if i["severity"] in ("error", "fatal")]


@pytest.mark.parametrize("case", RUN, ids=lambda c: c.name)
async def test_the_server_refuses_what_the_reference_validator_refuses(client: httpx.AsyncClient,
                                                                      case: ValidatorCase) -> None:
    status, errors = await validate(client, case)
    assert status in (200, 400), errors  # 200 with the outcome; 400 when the XML itself does not parse
    refused = status == 400 or bool(errors)
    expected = JUDGED_OTHERWISE[case.name][0] if case.name in JUDGED_OTHERWISE else \
        refused_by_reference_validator(case)
    assert refused == expected, [e.get("diagnostics") for e in errors]


def test_every_case_judged_otherwise_or_not_run_is_in_the_copy_and_disagrees_with_the_suite() -> None:
    names = {c.name for c in CASES}
    assert set(JUDGED_OTHERWISE) <= names and set(NOT_RUN) <= names
    assert not set(JUDGED_OTHERWISE) & set(NOT_RUN)
    by_name = {c.name: c for c in CASES}
    for name, (refused, _why) in JUDGED_OTHERWISE.items():
        assert refused != refused_by_reference_validator(by_name[name]), name


def test_the_copy_holds_the_suites_r4_cases_with_their_inputs() -> None:
    assert len(CASES) == 64 + 5 and len(RUN) == 57 + 5
    assert all(c.source.is_file() for c in CASES)
    assert sum(refused_by_reference_validator(c) for c in RUN) == 29 + 4
