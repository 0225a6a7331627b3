"""Issue 4, item 4: ``$validate`` at type and instance level, over HTTP
(https://hl7.org/fhir/R4/resource-operation-validate.html). It answers 200 with the OperationOutcome, stores
nothing, and reports exactly what a write would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import body, parse, post, unique
from tests.ig_http.helpers import SD, B, center, created, issues, registry_patient, registry_subject

JSON = {"Content-Type": "application/fhir+json"}


def parameters(resource: dict[str, Any] | None = None, **values: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": k, "valueCode" if k == "mode" else "valueUri": v}
                                    for k, v in values.items()]
    if resource is not None:
        params.insert(0, {"name": "resource", "resource": resource})
    return {"resourceType": "Parameters", "parameter": params}


async def count_patients(client: httpx.AsyncClient, pseudonym: str) -> int:
    r = await client.get("/fhir/Patient", params={"identifier": f"{B}/sid/patient|{pseudonym}",
                                                  "_summary": "count"})
    return int(parse(r)["total"])


async def test_type_level_reports_what_a_write_would_and_stores_nothing(registry_client: httpx.AsyncClient) -> None:
    org = await created(registry_client, center())
    bad = registry_patient(org, name=[{"family": "Doe"}], telecom=[{"system": "phone", "value": "1"}])
    r = await post(registry_client, "Patient/$validate", bad)
    assert r.status_code == 200, r.text
    reported = [i for i in issues(r) if i["severity"] == "error"]
    assert {e for i in reported for e in i["expression"]} >= {"Patient.name", "Patient.telecom"}
    assert await count_patients(registry_client, bad["identifier"][0]["value"]) == 0

    write = await post(registry_client, "Patient", bad)
    assert write.status_code == 422
    assert [i for i in issues(write) if i["severity"] == "error"] == reported


async def test_clean_resource_gets_an_information_issue(registry_client: httpx.AsyncClient) -> None:
    org = await created(registry_client, center())
    good = registry_patient(org)
    r = await post(registry_client, "Patient/$validate", good)
    assert r.status_code == 200
    assert [(i["severity"], i["code"]) for i in issues(r)] == [("information", "informational")]
    assert await count_patients(registry_client, good["identifier"][0]["value"]) == 0


async def test_parameters_body_with_profile(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "male"}
    r = await post(client, "Patient/$validate", parameters(patient))
    assert [i["severity"] for i in issues(r)] == ["information"]  # plain server: a plain Patient is fine
    r = await post(client, "Patient/$validate", parameters(patient, profile=f"{SD}/ifp-patient"))
    assert r.status_code == 200
    where = {e for i in issues(r) if i["severity"] == "error" for e in i["expression"]}
    assert {"Patient.name", "Patient.birthDate", "Patient.identifier", "Patient.managingOrganization"} <= where
    # the profile may also come from the query string; mode=profile checks only that profile
    r = await client.post("/fhir/Patient/$validate", params={"profile": f"{SD}/ifp-patient", "mode": "profile"},
                          content=body(patient), headers=JSON)
    assert any(i["severity"] == "error" for i in issues(r))


async def test_a_parameters_resource_is_validated_as_itself_when_it_holds_no_validate_parameter(
        client: httpx.AsyncClient) -> None:
    """operation-resource-validate.html: the resource is the body or the ``resource`` parameter. A Parameters body
    of ``Parameters/$validate`` naming none of the operation's parameters is the resource to check."""
    own = {"resourceType": "Parameters", "parameter": [{"name": "when", "valueDate": "2024-02-30"}]}
    r = await post(client, "Parameters/$validate", own)
    assert r.status_code == 200, r.text
    assert [(i["severity"], i["expression"]) for i in issues(r)] == [("error", ["Parameters.parameter[0].valueDate"])]
    empty = {"resourceType": "Parameters"}  # HL7's validator suite, params-empty: valid
    assert [i["severity"] for i in issues(await post(client, "Parameters/$validate", empty))] == ["information"]
    # holding $validate's own parameters, it is the operation's input, as for every other type
    r = await post(client, "Parameters/$validate", parameters(own))
    assert [(i["severity"], i["expression"]) for i in issues(r)] == [("error", ["Parameters.parameter[0].valueDate"])]
    assert (await post(client, "Parameters/$validate", parameters(mode="create"))).status_code == 400


async def test_structural_errors_are_the_outcome_not_a_failure(client: httpx.AsyncClient) -> None:
    r = await post(client, "Patient/$validate", {"resourceType": "Patient", "birthDate": "yesterday"})
    assert r.status_code == 200
    assert any(i["severity"] == "error" and "Patient.birthDate" in i.get("expression", []) for i in issues(r))


async def test_instance_level_validates_the_stored_version(registry_client: httpx.AsyncClient,
                                                           client: httpx.AsyncClient) -> None:
    # stored on the plain server with a name, which the registry profile forbids
    org = await created(client, center())
    ref = await created(client, registry_patient(org, name=[{"family": "Doe"}]))
    r = await client.get(f"/fhir/{ref}/$validate")
    assert [i["severity"] for i in issues(r)] == ["information"]
    r = await client.get(f"/fhir/{ref}/$validate", params={"profile": f"{SD}/ifp-patient"})
    assert any("Patient.name" in i.get("expression", []) for i in issues(r))
    r = await registry_client.get(f"/fhir/{ref}/$validate")  # the registry server applies its rule table
    assert any("Patient.name" in i.get("expression", []) for i in issues(r))


async def test_modes(registry_client: httpx.AsyncClient) -> None:
    subject = await registry_subject(registry_client)
    current = parse(await registry_client.get(f"/fhir/{subject}"))
    r = await post(registry_client, f"{subject}/$validate", parameters(current, mode="update"))
    assert [i["severity"] for i in issues(r)] == ["information"]
    changed = {**current, "name": [{"family": "Doe"}]}
    r = await post(registry_client, f"{subject}/$validate", parameters(changed, mode="update"))
    assert any("Patient.name" in i.get("expression", []) for i in issues(r))
    assert "name" not in parse(await registry_client.get(f"/fhir/{subject}"))

    fresh = unique("new-")
    r = await post(registry_client, f"Patient/{fresh}/$validate", parameters({**current, "id": fresh}, mode="update"))
    assert r.status_code == 200
    assert any("would create" in i["diagnostics"] for i in issues(r))

    r = await post(registry_client, f"{subject}/$validate", parameters(mode="delete"))
    assert r.status_code == 200 and issues(r)[0]["severity"] == "information"
    assert (await registry_client.get(f"/fhir/{subject}")).status_code == 200
    r = await post(registry_client, f"Patient/{unique('none-')}/$validate", parameters(mode="delete"))
    assert r.status_code == 404
    # mode in the URL and an empty body, sent with the Content-Type a client puts on every POST
    r = await registry_client.post(f"/fhir/{subject}/$validate?mode=delete", content=b"",
                                   headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200 and issues(r)[0]["severity"] == "information", r.text


async def test_bad_input(registry_client: httpx.AsyncClient) -> None:
    subject = await registry_subject(registry_client)
    current = parse(await registry_client.get(f"/fhir/{subject}"))
    cases = [
        (f"{subject}/$validate", parameters(current, mode="fix-it"), 400),  # unknown mode
        ("Patient/$validate", parameters(current, mode="update"), 400),  # update needs an instance
        ("Patient/$validate", parameters(current, mode="profile"), 400),  # profile mode needs a profile
        ("Patient/$validate", parameters(current, profile="http://example.org/none"), 400),  # unknown profile
        ("Patient/$validate", parameters(), 400),  # no resource
        ("Observation/$validate", current, 400),  # resource of another type
        (f"{subject}/$validate", {**current, "id": "other"}, 400),  # id of another resource
        (f"Patient/{unique('none-')}/$validate", parameters(), 404),  # no resource, no instance
        ("Patient/$validate", [1, 2], 400),  # not a resource
    ]
    for path, payload, status in cases:
        r = await post(registry_client, path, payload)
        assert r.status_code == status, (path, payload, r.text)
        assert parse(r)["resourceType"] == "OperationOutcome"
    r = await registry_client.get("/fhir/Patient/$validate")
    assert r.status_code == 400


async def test_validate_is_in_the_capability_statement(client: httpx.AsyncClient) -> None:
    statement = parse(await client.get("/fhir/metadata"))
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    names = {o["name"] for o in patient.get("operation", [])}
    assert {"validate", "risk-scores"} <= names
