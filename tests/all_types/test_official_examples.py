"""Every one of HL7's 785 official R4 examples (135 types) round-trips unchanged in plain-FHIR mode, or is
refused with the precise OperationOutcome named here (the example breaks a rule of the specification)."""

from __future__ import annotations

import httpx
import pytest

from tests.all_types.examples import example_files, load, without_server_meta
from tests.conftest import parse, put

# Official examples that break a rule of the R4 specification itself: (status, the elements the errors are at
# (path endings), a word every error's diagnostics holds). Kept short: each is a defect of the example.
REFUSED: dict[str, tuple[int, tuple[str, ...], str]] = {
    # observation.html#vitals: a vital sign (f202 is a body temperature, LOINC 8310-5) SHALL conform to its
    # vital signs profile (bodytemp); the base vitalsigns profile requires effective[x] (1..1), f202 has none.
    "Observation-f202.json": (422, ("Observation.effective",), "effective"),
    # questionnaire.html: Questionnaire.item.linkId is 1..1; the nested items of qs1 (the "Lifelines" sample
    # questionnaire) have none.
    "Questionnaire-qs1.json": (400, (".linkId",), "linkId"),
    # implementationguide.html: ImplementationGuide.name and .status are 1..1; the guide of the specification
    # itself (two copies, id "fhir") has neither.
    "ImplementationGuide-fhir.json": (400, ("ImplementationGuide.name", "ImplementationGuide.status"), "required"),
    "ig-r4.json": (400, ("ImplementationGuide.name", "ImplementationGuide.status"), "required"),
}


# The audit trail is recorded by the server and never written by a client (issue #11 item 8; security.html:
# an audit log a client could write would prove nothing): the AuditEvent examples are checked by $validate.
AUDIT_EXAMPLES = [n for n in example_files() if n.startswith("AuditEvent-")]


@pytest.mark.parametrize("name", [n for n in example_files() if n not in REFUSED and n not in AUDIT_EXAMPLES])
async def test_official_example_round_trips_unchanged(big_client: httpx.AsyncClient, name: str) -> None:
    example = load(name)
    path = f"{example['resourceType']}/{example['id']}"
    r = await put(big_client, path, example)
    assert r.status_code in (200, 201), r.text
    read = await big_client.get(f"/fhir/{path}")
    assert read.status_code == 200
    assert without_server_meta(parse(read)) == without_server_meta(example)


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_nonconforming_official_example_is_refused_at_the_offending_element(big_client: httpx.AsyncClient,
                                                                                  name: str) -> None:
    example = load(name)
    r = await put(big_client, f"{example['resourceType']}/{example['id']}", example)
    status, elements, rule = REFUSED[name]
    assert r.status_code == status, r.text
    errors = [i for i in parse(r)["issue"] if i["severity"] == "error"]
    assert errors
    for issue in errors:
        assert [e.endswith(elements) for e in issue["expression"]] == [True], issue
        assert rule in issue["diagnostics"]


@pytest.mark.parametrize("name", AUDIT_EXAMPLES)
async def test_official_audit_event_example_is_valid_but_not_writable(big_client: httpx.AsyncClient,
                                                                      name: str) -> None:
    example = load(name)
    r = await put(big_client, f"AuditEvent/{example['id']}", example)
    assert r.status_code == 405, r.text
    assert "recorded by the server" in parse(r)["issue"][0]["diagnostics"]
    validated = await big_client.post("/fhir/AuditEvent/$validate", content=r.request.content,
                                      headers={"Content-Type": "application/fhir+json"})
    assert validated.status_code == 200, validated.text
    assert [i for i in parse(validated)["issue"] if i["severity"] in ("error", "fatal")] == []
