"""The synthetic registry generator: deterministic, and shaped like the data contract's Bundle
(data-contract.md, "A typical submission")."""

from __future__ import annotations

import random
from collections import Counter
from statistics import median
from typing import Any

import httpx

from fhir_server.contract import BASE
from tests import synthetic

CONCEPTS = f"{BASE}/CodeSystem/ifp-concepts"
RECORD = f"{BASE}/sid/record"


def _types(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle["entry"]]


def _codes(resource: dict[str, Any], element: str = "code") -> set[tuple[str, str]]:
    return _cc_codes(resource.get(element, {}))


def _cc_codes(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def _observation(bundle: dict[str, Any], code: str) -> dict[str, Any] | None:
    return next((r for r in _resources(bundle, "Observation") if (CONCEPTS, code) in _codes(r)), None)


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def test_same_seed_same_bundles() -> None:
    first = [b for b, _ in synthetic.registry_cohort(20, seed=7)]
    again = [b for b, _ in synthetic.registry_cohort(20, seed=7)]
    other = [b for b, _ in synthetic.registry_cohort(20, seed=8)]
    assert first == again
    assert first != other


def test_bundle_structure() -> None:
    for index, (bundle, facts) in enumerate(synthetic.registry_cohort(50, seed=3), start=1):
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        types = _types(bundle)
        assert types[:3] == ["Organization", "Patient", "Condition"]
        assert types.count("MedicationStatement") >= 1
        full_urls = {e["fullUrl"] for e in bundle["entry"]}
        assert len(full_urls) == len(types) and all(u.startswith("urn:uuid:") for u in full_urls)
        org, patient = bundle["entry"][0]["resource"], bundle["entry"][1]["resource"]
        assert org["identifier"][0] == {"system": f"{BASE}/sid/center", "value": facts.center}
        assert org["address"][0]["country"] == facts.country
        assert bundle["entry"][0]["request"]["ifNoneExist"] == f"identifier={BASE}/sid/center|{facts.center}"
        assert patient["identifier"][0]["value"] == facts.pseudonym == f"{facts.center}-{index:04d}"
        assert patient["managingOrganization"]["reference"] == bundle["entry"][0]["fullUrl"]
        assert patient["gender"] == facts.sex
        assert not {"name", "telecom", "address", "photo", "contact"} & set(patient)
        for entry in bundle["entry"][2:]:
            resource = entry["resource"]
            assert resource["subject"]["reference"] == bundle["entry"][1]["fullUrl"]
            ident = resource["identifier"][0]
            assert ident["system"] == RECORD and ident["value"].startswith(facts.pseudonym + "/")
            assert ident["value"].split("/")[1].isdigit()
            assert entry["request"] == {"method": "POST", "url": resource["resourceType"],
                                        "ifNoneExist": f"identifier={RECORD}|{ident['value']}"}
            assert resource["meta"]["profile"][0].startswith(f"{BASE}/StructureDefinition/ifp-")


def test_imatinib_periods_and_registration_match_the_facts() -> None:
    for bundle, facts in synthetic.registry_cohort(80, seed=11):
        statements = _resources(bundle, "MedicationStatement")
        assert [s["status"] for s in statements] == ["completed"] * (len(statements) - 1) + ["stopped"]
        last = statements[-1]
        for s in statements:
            assert (("http://www.whocc.no/atc", "L01EA01") in _codes(s, "medicationCodeableConcept"))
            assert s["dosage"][0]["doseAndRate"][0]["doseQuantity"]["code"] == "mg"
        repeat = last["dosage"][0]["timing"]["repeat"]
        dose = last["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"]
        assert float(dose * repeat["frequency"] / repeat["period"]) == facts.dose_at_stop
        decision = _observation(bundle, "decision-after-imatinib")
        assert decision is not None and _codes(decision, "valueCodeableConcept") == {
            (f"{BASE}/CodeSystem/ifp-decision", facts.decision)}
        registration = _observation(bundle, "registration-reason")
        assert (registration is not None) == facts.registration_observation
        if registration is None:  # registered at the end of the stopped period (data contract v0.2)
            assert facts.reason == synthetic.NOT_RECORDED and "statusReason" not in last
            assert last["effectivePeriod"]["end"] == facts.registration_date.isoformat()
            continue
        assert registration["effectiveDateTime"] == facts.registration_date.isoformat()
        phase = [c for c in registration["component"] if (CONCEPTS, "phase-at-registration") in _codes(c)]
        assert len(phase) == 1
        if facts.reason == synthetic.NOT_RECORDED:
            assert "statusReason" not in last and facts.group is None
            assert "valueCodeableConcept" not in registration
            assert registration["dataAbsentReason"]["coding"][0]["code"] == "unknown"
        else:
            codes = _cc_codes(last["statusReason"][0])
            snomed = "407563006" if facts.group == "toxicity" else "266721009"
            assert codes == {("http://snomed.info/sct", snomed),
                             (f"{BASE}/CodeSystem/ifp-registration-reason", facts.reason)}
            assert _codes(registration, "valueCodeableConcept") == {
                (f"{BASE}/CodeSystem/ifp-registration-reason", facts.reason)}
        toxicity = {c["code"]["coding"][0]["code"] for c in registration["component"]} & {
            "toxicity-type", "toxicity-grade"}
        assert toxicity == ({"toxicity-type", "toxicity-grade"} if facts.reason == "toxicity" else set())


def test_distribution_resembles_the_registry_letter() -> None:
    facts = [f for _, f in synthetic.registry_cohort(567, seed=2008)]
    sexes = Counter(f.sex for f in facts)
    assert 0.50 < sexes["male"] / 567 < 0.60
    ages = [f.age_at_diagnosis for f in facts]
    assert 48 <= median(ages) <= 54 and min(ages) >= 18 and max(ages) <= 80
    assert len({f.country for f in facts}) == 12
    reasons = Counter(f.reason for f in facts)
    assert 0.18 < reasons["progression-ap-bc"] / 567 < 0.28
    assert 0.12 < reasons["toxicity"] / 567 < 0.22
    assert 0.09 < reasons[synthetic.NOT_RECORDED] / 567 < 0.18  # the letter: 77 of 567
    assert 0.50 < Counter(f.prospective for f in facts)["never-included"] / 567 < 0.64


def test_a_reason_not_recorded_comes_in_both_forms() -> None:
    """Data contract v0.2: a center that did not record the reason sends a registration Observation with
    ``dataAbsentReason``, or none at all; the synthetic registry has both, and only for such patients."""
    facts = [f for _, f in synthetic.registry_cohort(567, seed=2008)]
    forms = Counter((f.reason == synthetic.NOT_RECORDED, f.registration_observation) for f in facts)
    assert forms[(True, True)] > 10 and forms[(True, False)] > 10
    assert forms[(False, False)] == 0


def test_one_bundle_per_rng_call_is_deterministic() -> None:
    a, fa = synthetic.registry_bundle(42, random.Random(5))
    b, fb = synthetic.registry_bundle(42, random.Random(5))
    assert a == b and fa == fb


async def test_bundle_is_accepted_as_a_transaction(client: httpx.AsyncClient) -> None:
    from tests.conftest import body, parse

    bundle, _ = synthetic.registry_bundle(9001, random.Random(9001))
    response = await client.post("/fhir", content=body(bundle),
                                 headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    result = parse(response)
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"][:3] for e in result["entry"]]
    assert statuses[0] in ("200", "201")  # the center may exist already (other tests' patients)
    assert statuses[1:] == ["201"] * (len(bundle["entry"]) - 1)
    again = parse(await client.post("/fhir", content=body(bundle),
                                    headers={"Content-Type": "application/fhir+json"}))
    assert [e["response"]["status"][:3] for e in again["entry"]] == ["200"] * len(bundle["entry"])
