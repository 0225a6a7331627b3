"""``Patient/$match`` (https://hl7.org/fhir/R4/patient-operation-match.html): the Patients that may be the one
given, most likely first, each with ``search.score`` and a ``match-grade`` (certain, probable, possible); the
grades as ``fhir_server.interactions.match`` defines them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import parse, post, unique

SYSTEM = "urn:example:mrn"
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


def person(family: str, given: str, birth_date: str, gender: str = "female", mrn: str | None = None
           ) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
                                "birthDate": birth_date, "gender": gender}
    if mrn:
        resource["identifier"] = [{"system": SYSTEM, "value": mrn}]
    return resource


async def _stored(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await post(client, "Patient", resource)
    assert response.status_code == 201, response.text
    return str(parse(response)["id"])


async def _match(client: httpx.AsyncClient, described: dict[str, Any], *extra: dict[str, Any]) -> dict[str, Any]:
    response = await post(client, "Patient/$match", {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": described}, *extra]})
    assert response.status_code == 200, response.text
    bundle = parse(response)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return dict(bundle)


def _graded(bundle: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(id, grade, score) of the matches, in the Bundle's order."""
    out = []
    for entry in bundle.get("entry", []):
        if entry["search"]["mode"] != "match":
            continue
        [grade] = [e["valueCode"] for e in entry["search"]["extension"] if e["url"] == MATCH_GRADE]
        out.append((entry["resource"]["id"], grade, float(entry["search"]["score"])))
    return out


async def test_a_shared_identifier_is_certain_and_comes_first(client: httpx.AsyncClient) -> None:
    family, mrn = unique("Fam"), unique()
    same = await _stored(client, person(family, "Jean", "1960-02-03", "male", mrn))
    twin = await _stored(client, person(family, "Marc", "1960-02-03", "male"))  # family, birth date, gender
    await _stored(client, person(family, "Marie", "1960-02-03", "female"))  # another gender: not her
    bundle = await _match(client, person(family, "Jean", "1960-02-03", "male", mrn))
    assert _graded(bundle) == [(same, "certain", 1.0), (twin, "possible", 0.8)]
    assert bundle["total"] == 2
    assert bundle["entry"][0]["fullUrl"].endswith(f"/Patient/{same}")


async def test_a_shared_identifier_with_another_birth_date_is_only_probable(client: httpx.AsyncClient) -> None:
    mrn = unique()
    stored = await _stored(client, person(unique("Fam"), "Ana", "1970-01-01", mrn=mrn))
    assert _graded(await _match(client, person("Other", "Ana", "1971-01-01", mrn=mrn))) == [
        (stored, "probable", 0.8)]


async def test_names_birth_date_and_gender_without_identifier(client: httpx.AsyncClient) -> None:
    family = unique("Lévêque")
    everything = await _stored(client, person(family, "Zoé", "1981-05-06"))
    assert _graded(await _match(client, person(family.upper().replace("É", "E"), "zoe", "1981-05-06"))) == [
        (everything, "probable", 1.0)]
    without_gender = person(family, "Zoé", "1981-05-06")
    del without_gender["gender"]
    assert _graded(await _match(client, without_gender)) == [(everything, "probable", 0.9)]
    assert _graded(await _match(client, person(family, "Other", "1981-05-06"))) == [
        (everything, "possible", 0.8)]


async def test_a_patient_born_another_day_or_of_another_gender_is_no_match(client: httpx.AsyncClient) -> None:
    family = unique("Fam")
    await _stored(client, person(family, "Eve", "1990-01-01", "female"))
    assert _graded(await _match(client, person(family, "Eve", "1990-01-02"))) == []
    assert _graded(await _match(client, person(family, "Eve", "1990-01-01", "male"))) == []


async def test_only_certain_matches_gives_the_one_certain_match(client: httpx.AsyncClient) -> None:
    family, mrn = unique("Fam"), unique()
    same = await _stored(client, person(family, "Jean", "1960-02-03", mrn=mrn))
    await _stored(client, person(family, "Jeanne", "1960-02-03"))
    only = {"name": "onlyCertainMatches", "valueBoolean": True}
    assert _graded(await _match(client, person(family, "Jean", "1960-02-03", mrn=mrn), only)) == [
        (same, "certain", 1.0)]


async def test_only_certain_matches_gives_nothing_when_two_are_certain(client: httpx.AsyncClient) -> None:
    family, mrn = unique("Fam"), unique()
    await _stored(client, person(family, "Jean", "1960-02-03", mrn=mrn))
    await _stored(client, person(family, "Jean", "1960-02-03", mrn=mrn))
    described = person(family, "Jean", "1960-02-03", mrn=mrn)
    assert len(_graded(await _match(client, described))) == 2
    assert _graded(await _match(client, described, {"name": "onlyCertainMatches", "valueBoolean": True})) == []


async def test_count_keeps_the_best(client: httpx.AsyncClient) -> None:
    family, mrn = unique("Fam"), unique()
    same = await _stored(client, person(family, "Jean", "1960-02-03", mrn=mrn))
    await _stored(client, person(family, "Paul", "1960-02-03"))
    assert _graded(await _match(client, person(family, "Jean", "1960-02-03", mrn=mrn),
                                {"name": "count", "valueInteger": 1})) == [(same, "certain", 1.0)]


async def test_nothing_to_match_on_is_an_empty_searchset_with_advice(client: httpx.AsyncClient) -> None:
    bundle = await _match(client, {"resourceType": "Patient", "name": [{"given": ["Solo"]}]})
    assert bundle["total"] == 0
    [advice] = bundle["entry"]
    assert advice["search"]["mode"] == "outcome"
    assert "identifier" in advice["resource"]["issue"][0]["diagnostics"]


async def test_match_needs_a_patient_and_a_post(client: httpx.AsyncClient) -> None:
    observation = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Observation"}}]}
    refused = await post(client, "Patient/$match", observation)
    assert refused.status_code == 400
    assert parse(refused)["issue"][0]["expression"] == ["resource"]
    bad_count = await post(client, "Patient/$match", {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": person("A", "B", "2000-01-01")}, {"name": "count", "valueInteger": 0}]})
    assert bad_count.status_code == 400
    assert (await client.get("/fhir/Patient/$match")).status_code == 405
