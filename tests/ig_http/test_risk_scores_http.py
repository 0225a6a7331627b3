"""Issue 4, item 7: ``Patient/[id]/$risk-scores`` and the warning on submitted scores that disagree, over HTTP.

Hand-computed reference (data contract, "Risk scores"): age at diagnosis 56 (born 1950-06-15, diagnosed
2006-09-01), spleen 10 cm, platelets 700 x 10^9/L, blasts 4 %, eosinophils 5 %, basophils 4 %:

* Sokal = exp(0.0116*12.6 + 0.0345*2.49 + 0.188*(1 - 0.563) + 0.0887*1.9) = exp(0.482751) = 1.6205 -> high
* Hasford = 1000 * (0.6666 + 0.420 + 0.2336 + 0.2065 + 0.2039 + 0) = 1730.6 -> high
* EUTOS = 7*4 + 4*10 = 68 -> low
* ELTS = 0.0025*5.6^3 + 0.0615*10 + 0.1052*4 + 0.4104/sqrt(0.7) = 0.43904 + 0.615 + 0.4208 + 0.490522 = 1.9654
  -> intermediate
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import body, parse
from tests.ig_http.helpers import (
    CONCEPTS,
    LOINC,
    created,
    diagnosis,
    lab,
    registry_subject,
    risk_score,
)
from tests.synthetic import registry_bundle

EXPECTED = {"sokal": (Decimal("1.6205"), "high"), "hasford": (Decimal("1730.6"), "high"),
            "eutos": (Decimal("68"), "low"), "elts": (Decimal("1.9654"), "intermediate")}
DX = "2006-09-01"
OUTCOME = {"Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"}


async def patient_with_baseline(client: httpx.AsyncClient, *, spleen: tuple[str, str] = (CONCEPTS, "spleen-size"),
                                platelets: tuple[Any, str] = (700, "10*9/L"),
                                labs: tuple[str, ...] = ("spleen", "platelets", "blasts", "eosinophils",
                                                         "basophils")) -> str:
    subject = await registry_subject(client, birth_date="1950-06-15")
    await created(client, diagnosis(subject, DX))
    values = {"spleen": (*spleen, 10, "cm"), "platelets": (LOINC, "777-3", *platelets),
              "blasts": (LOINC, "26446-5", 4, "%"), "eosinophils": (LOINC, "713-8", 5, "%"),
              "basophils": (LOINC, "706-2", 4, "%")}
    for name in labs:
        system, code, value, unit = values[name]
        await created(client, lab(subject, system, code, value, unit, DX))
    # an older measurement far from diagnosis must not be used
    await created(client, lab(subject, LOINC, "706-2", 30, "%", "2009-01-01"))
    return subject


def scores(bundle: dict[str, Any]) -> dict[str, tuple[Decimal, str]]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    out = {}
    for entry in bundle["entry"]:
        obs = entry["resource"]
        if obs["resourceType"] != "Observation":
            continue
        assert obs["meta"]["profile"] == ["https://cml-registry.eu/fhir/StructureDefinition/ifp-risk-score"]
        name = obs["code"]["coding"][0]["code"].removesuffix("-score")
        out[name] = (Decimal(str(obs["valueQuantity"]["value"])), obs["interpretation"][0]["coding"][0]["code"])
    return out


async def count_scores(client: httpx.AsyncClient, subject: str) -> int:
    r = await client.get("/fhir/Observation", params={
        "subject": subject, "code": ",".join(f"{CONCEPTS}|{s}-score" for s in EXPECTED), "_summary": "count"})
    return int(parse(r)["total"])


async def test_scores_are_computed_from_baseline_and_not_stored(registry_client: httpx.AsyncClient) -> None:
    subject = await patient_with_baseline(registry_client)
    r = await registry_client.get(f"/fhir/{subject}/$risk-scores")
    assert r.status_code == 200, r.text
    assert scores(parse(r)) == EXPECTED
    first = parse(r)["entry"][0]["resource"]
    assert first["subject"] == {"reference": subject} and first["effectiveDateTime"] == DX
    assert len(first["derivedFrom"]) == 5
    assert await count_scores(registry_client, subject) == 0


async def test_equivalent_codes_and_units(client: httpx.AsyncClient) -> None:
    # the registry profile wants 10*9/L; plain FHIR data (the plain server) may use /uL
    subject = await patient_with_baseline(client, spleen=(LOINC, "32489-7"), platelets=(700_000, "/uL"))
    assert scores(parse(await client.get(f"/fhir/{subject}/$risk-scores"))) == EXPECTED


async def test_missing_inputs_skip_scores_and_say_why(registry_client: httpx.AsyncClient) -> None:
    subject = await patient_with_baseline(registry_client, labs=("spleen", "basophils"))
    bundle = parse(await registry_client.get(f"/fhir/{subject}/$risk-scores"))
    assert scores(bundle) == {"eutos": EXPECTED["eutos"]}
    outcome = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "OperationOutcome")
    assert "platelets" in outcome["issue"][-1]["diagnostics"]


async def test_persist_stores_once(registry_client: httpx.AsyncClient) -> None:
    subject = await patient_with_baseline(registry_client)
    assert (await registry_client.get(f"/fhir/{subject}/$risk-scores", params={"persist": "true"})).status_code == 400
    for _ in range(2):
        r = await registry_client.post(f"/fhir/{subject}/$risk-scores", params={"persist": "true"})
        assert r.status_code == 200, r.text
        assert scores(parse(r)) == EXPECTED
        assert all("id" in e["resource"] for e in parse(r)["entry"])
    assert await count_scores(registry_client, subject) == 4


async def test_unknown_patient(registry_client: httpx.AsyncClient) -> None:
    assert (await registry_client.get("/fhir/Patient/no-such-patient/$risk-scores")).status_code == 404


async def warnings_of(client: httpx.AsyncClient, resource: dict[str, Any]) -> list[dict[str, Any]]:
    r = await client.post("/fhir/Observation", content=body(resource), headers=OUTCOME)
    assert r.status_code == 201, r.text
    return [i for i in parse(r)["issue"] if i["severity"] == "warning"]


async def test_submitted_score_disagreeing_gets_a_warning(registry_client: httpx.AsyncClient,
                                                          client: httpx.AsyncClient) -> None:
    subject = await patient_with_baseline(registry_client)
    assert await warnings_of(registry_client, risk_score(subject, "eutos", 68, "low", DX)) == []
    assert await warnings_of(registry_client, risk_score(subject, "sokal", Decimal("1.62"), "high", DX)) == []
    assert await warnings_of(registry_client, risk_score(subject, "sokal", Decimal("1.6"), "high", DX)) == []
    assert await warnings_of(registry_client, risk_score(subject, "elts", Decimal("1.9654"), "intermediate",
                                                         DX)) == []
    found = await warnings_of(registry_client, risk_score(subject, "sokal", Decimal("1.5"), "high", DX))
    assert [i["expression"] for i in found] == [["Observation.valueQuantity.value"]]
    assert "1.6205" in found[0]["diagnostics"] and found[0]["code"] == "business-rule"
    found = await warnings_of(registry_client, risk_score(subject, "hasford", 1731, "intermediate", DX))
    assert [i["expression"] for i in found] == [["Observation.interpretation[0]"]]
    # the check runs on the plain server too (a warning, never a rejection)
    found = await warnings_of(client, risk_score(subject, "eutos", 75, "low", DX))
    assert len(found) == 1 and "68" in found[0]["diagnostics"]


async def test_scores_in_a_transaction_are_checked_against_the_bundles_own_baseline(
        registry_client: httpx.AsyncClient) -> None:
    index = random.randint(100_000, 999_999)
    bundle, _facts = registry_bundle(index, random.Random(index))
    risk = [i for i, e in enumerate(bundle["entry"])
            if any(c.get("code", "").endswith("-score") for c in e["resource"].get("code", {}).get("coding", []))]
    assert risk, "the synthetic patient has risk scores"
    tampered = risk[0]
    quantity = bundle["entry"][tampered]["resource"]["valueQuantity"]
    quantity["value"] = Decimal(str(quantity["value"])) + 5
    r = await registry_client.post("/fhir", content=body(bundle), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    entries = parse(r)["entry"]
    warned = [i for i, e in enumerate(entries) if "outcome" in e["response"]]
    assert warned == [tampered], [(bundle["entry"][i]["resource"], entries[i]["response"]["outcome"])
                                  for i in warned]


async def test_scores_of_several_stored_patients_in_one_transaction_are_each_checked_against_their_own(
        registry_client: httpx.AsyncClient) -> None:
    # the check reads the stored baselines of every patient of the transaction's scores with one query per type:
    # each patient's score must still be judged by that patient's data only
    matching = await patient_with_baseline(registry_client)
    other = await patient_with_baseline(registry_client, platelets=(300, "10*9/L"))  # a lower Sokal score
    entries = [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                "resource": risk_score(subject, "sokal", Decimal("1.6205"), "high", DX),
                "request": {"method": "POST", "url": "Observation"}} for i, subject in enumerate((other, matching))]
    r = await registry_client.post("/fhir", content=body({"resourceType": "Bundle", "type": "transaction",
                                                          "entry": entries}),
                                   headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    warned = [i for i, e in enumerate(parse(r)["entry"]) if "outcome" in e["response"]]
    assert warned == [0]


async def test_a_score_is_checked_without_the_stored_observations_the_same_transaction_deletes(
        registry_client: httpx.AsyncClient) -> None:
    subject = await patient_with_baseline(registry_client, labs=("spleen", "platelets", "blasts", "eosinophils"))
    basophils = await created(registry_client, lab(subject, LOINC, "706-2", 4, "%", DX))
    entries = [{"request": {"method": "DELETE", "url": basophils}},
               {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "resource": risk_score(subject, "eutos", 68, "low", DX),
                "request": {"method": "POST", "url": "Observation"}}]
    r = await registry_client.post("/fhir", content=body({"resourceType": "Bundle", "type": "transaction",
                                                          "entry": entries}),
                                   headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    # without the deleted basophils at diagnosis, the 2009 measurement (30 %) is the closest: EUTOS 250, not 68
    outcome = parse(r)["entry"][1]["response"]["outcome"]
    assert any("250" in i["diagnostics"] for i in outcome["issue"] if i["severity"] == "warning")
