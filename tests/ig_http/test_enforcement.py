"""Issue 4, item 3: the registry's rule table and claimed profiles enforced on every write, over HTTP.

Each rule of ``profiles/rules.json`` is exercised with a resource its selector picks: the valid resource is
accepted, the same resource with one defect is refused with 422 and an OperationOutcome whose issues carry
severity, code, diagnostics and the FHIRPath ``expression`` of the offending element; the plain server
(``client``, rule table off) accepts the defective resource, so it is the rule table that refuses it.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.json_types import Json
from tests.conftest import body, parse, post
from tests.ig_http.helpers import (
    CONCEPTS,
    LOINC,
    PHASE,
    REASON,
    RESPONSE,
    SD,
    SNOMED,
    center,
    concept,
    diagnosis,
    issues,
    lab,
    record,
    registration,
    registry_patient,
    registry_subject,
    risk_score,
)
from tests.synthetic import registry_bundle

RULES = json.loads((Path(__file__).resolve().parents[2] / "profiles" / "rules.json").read_text())["rules"]
ATC = "http://www.whocc.no/atc"


def _imatinib(subject: str) -> Json:
    return {"resourceType": "MedicationStatement", "identifier": record(), "status": "active",
            "medicationCodeableConcept": concept(ATC, "L01EA01"), "subject": {"reference": subject},
            "effectivePeriod": {"start": "2005-01-01"},
            "dosage": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                        "doseAndRate": [{"doseQuantity": {"value": 400, "unit": "mg",
                                                          "system": "http://unitsofmeasure.org", "code": "mg"}}]}]}


def _drop(*path: Any) -> Callable[[Json], None]:
    def mutate(resource: Json) -> None:
        target: Any = resource
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _set(key: str, value: Any) -> Callable[[Json], None]:
    def mutate(resource: Json) -> None:
        resource[key] = value
    return mutate


# rule id -> (valid resource builder (subject, center) -> resource, defect, expected expression of an error)
CASES: dict[str, tuple[Callable[[str, str], Json], Callable[[Json], None], str]] = {
    "patient": (lambda s, c: registry_patient(c), _set("name", [{"family": "Doe"}]), "Patient.name"),
    "center": (lambda s, c: center(), _drop("address"), "Organization.address"),
    "cml-diagnosis": (lambda s, c: diagnosis(s, "2004-05-06"), _drop("onsetDateTime"), "Condition.onset"),
    "imatinib": (lambda s, c: _imatinib(s), _drop("dosage"), "MedicationStatement.dosage"),
    "subsequent-therapy": (
        lambda s, c: {"resourceType": "MedicationStatement", "identifier": record(), "status": "active",
                      "medicationCodeableConcept": concept(ATC, "L01EA02"), "subject": {"reference": s},
                      "effectivePeriod": {"start": "2007-04-01"}},
        _set("effectivePeriod", {"end": "2008-01-01"}), "MedicationStatement.effectivePeriod"),
    "registration": (lambda s, c: registration(s), _set("valueCodeableConcept", concept(REASON, "failure")),
                     "Observation.valueCodeableConcept"),
    "baseline-lab": (lambda s, c: lab(s, LOINC, "777-3", 420, "10*9/L", "2004-05-06"), _drop("valueQuantity"),
                     "Observation.value"),
    "response": (
        lambda s, c: {"resourceType": "Observation", "identifier": record(), "status": "final",
                      "code": concept(CONCEPTS, "hematologic-response"), "subject": {"reference": s},
                      "effectiveDateTime": "2005-04-01", "valueCodeableConcept": concept(RESPONSE, "chr")},
        _drop("effectiveDateTime"), "Observation.effective"),
    "risk-score": (lambda s, c: risk_score(s, "eutos", 40, "low", "2004-05-06"),
                   _set("interpretation", [concept(RESPONSE, "intermediate")]), "Observation"),
    "decision": (
        lambda s, c: {"resourceType": "Observation", "identifier": record(), "status": "final",
                      "code": concept(CONCEPTS, "decision-after-imatinib"), "subject": {"reference": s},
                      "effectiveDateTime": "2007-03-02",
                      "valueCodeableConcept": concept(f"{CONCEPTS.rsplit('/', 1)[0]}/ifp-decision", "nilotinib")},
        _set("valueCodeableConcept", concept(PHASE, "chronic")), "Observation.valueCodeableConcept"),
    "transplant": (
        lambda s, c: {"resourceType": "Procedure", "identifier": record(), "status": "completed",
                      "code": concept(SNOMED, "58390007"), "subject": {"reference": s},
                      "performedDateTime": "2008-01-01"},
        _drop("performedDateTime"), "Procedure.performed"),
}


def test_every_rule_of_the_table_has_a_case() -> None:
    assert {r["id"] for r in RULES} == set(CASES)


@pytest.mark.parametrize("rule", sorted(CASES))
async def test_rule_is_enforced(rule: str, registry_client: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    build, defect, where = CASES[rule]
    subject = await registry_subject(registry_client)
    org = (parse(await registry_client.get(f"/fhir/{subject}")))["managingOrganization"]["reference"]
    good = build(subject, org)
    r = await post(registry_client, good["resourceType"], good)
    assert r.status_code == 201, r.text

    bad = copy.deepcopy(build(subject, org))
    defect(bad)
    r = await post(registry_client, bad["resourceType"], bad)
    assert r.status_code == 422, r.text
    found = issues(r)
    errors = [i for i in found if i["severity"] == "error"]
    assert errors, found
    for issue in found:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert issue["code"] and issue["diagnostics"] and issue["expression"], issue
    assert any(e.startswith(where) for i in errors for e in i["expression"]), (where, errors)

    # the plain server does not apply the rule table: the same defective resource is stored
    r = await post(client, bad["resourceType"], bad)
    assert r.status_code == 201, r.text


async def test_outcome_lists_every_issue(registry_client: httpx.AsyncClient) -> None:
    org = await registry_subject(registry_client)
    patient = registry_patient(org.replace("Patient", "Organization"), name=[{"family": "Doe"}],
                               telecom=[{"system": "phone", "value": "1"}])
    del patient["birthDate"]
    r = await post(registry_client, "Patient", patient)
    assert r.status_code == 422
    where = {e for i in issues(r) if i["severity"] == "error" for e in i["expression"]}
    assert {"Patient.name", "Patient.telecom", "Patient.birthDate"} <= where, where


async def test_claimed_profile_is_validated_on_the_plain_server(client: httpx.AsyncClient) -> None:
    org = center()
    r = await post(client, "Organization", org)
    assert r.status_code == 201
    patient = registry_patient(f"Organization/{parse(r)['id']}", name=[{"family": "Doe"}])
    assert (await post(client, "Patient", patient)).status_code == 201  # no claim: a plain FHIR Patient

    patient["meta"] = {"profile": [f"{SD}/ifp-patient"]}
    r = await post(client, "Patient", patient)
    assert r.status_code == 422, r.text
    assert any("Patient.name" in i["expression"] for i in issues(r))
    del patient["name"]
    assert (await post(client, "Patient", patient)).status_code == 201


async def test_unknown_claimed_profile_is_a_warning_only(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "meta": {"profile": ["http://example.org/StructureDefinition/none"]}}
    r = await client.post("/fhir/Patient", content=body(patient),
                          headers={"Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    assert [i["severity"] for i in issues(r)] == ["warning"]


async def test_transaction_with_one_failing_entry_stores_nothing(registry_client: httpx.AsyncClient) -> None:
    while True:  # a patient whose Bundle has a registration Observation (some have none: reason not recorded)
        index = random.randint(10_000, 99_999)
        bundle, facts = registry_bundle(index, random.Random(index))
        if facts.registration_observation:
            break
    entries = bundle["entry"]
    reg = next(i for i, e in enumerate(entries)
               if any(c.get("code") == "registration-reason" for c in e["resource"].get("code", {}).get("coding", [])))
    entries[reg]["resource"]["valueCodeableConcept"] = concept(REASON, "failure")  # not a leaf: refused
    entries[reg]["resource"].pop("dataAbsentReason", None)
    pat = next(i for i, e in enumerate(entries) if e["resource"]["resourceType"] == "Patient")
    entries[pat]["resource"]["name"] = [{"family": "Doe"}]  # second failing entry: both reported

    r = await registry_client.post("/fhir", content=body(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 422, r.text
    found = issues(r)
    where = [e for i in found if i["severity"] == "error" for e in i["expression"]]
    assert any(e.startswith(f"Bundle.entry[{reg}].resource.valueCodeableConcept") for e in where), where
    assert any(e.startswith(f"Bundle.entry[{pat}].resource.name") for e in where), where
    assert all(i["diagnostics"].startswith("Bundle.entry[") for i in found if i["severity"] == "error")

    for kind, system in (("Patient", "patient"), ("Observation", "record")):
        value = facts.pseudonym if kind == "Patient" else f"{facts.pseudonym}/8"
        r = await registry_client.get(f"/fhir/{kind}", params={
            "identifier": f"https://cml-registry.eu/fhir/sid/{system}|{value}", "_summary": "count"})
        assert parse(r)["total"] == 0

    entries[reg]["resource"]["valueCodeableConcept"] = concept(REASON, "no-cyr-6m")
    del entries[pat]["resource"]["name"]
    r = await registry_client.post("/fhir", content=body(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
