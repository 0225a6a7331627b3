"""Centers on stored documents, over HTTP against MongoDB (issue #11 item 6): what each version is stored with,
the start-up migration of documents stored before centers existed, the per-center conditional create, and
page links bound to their caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import fhirjson
from fhir_server.contract import CENTER_SYSTEM
from fhir_server.permissions import Caller, Role
from fhir_server.resources import SUPPORTED_TYPES
from fhir_server.services import Services
from fhir_server.storage.centers import UNASSIGNED
from tests.conftest import FHIR_JSON, body, client_as, parse, post
from tests.security.world import SEED, World, new_world, store_seed

EXAMPLE_BUNDLE = Path(__file__).parents[2] / "examples" / "patient-bundle.json"


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient) -> World:
    world = new_world()
    await store_seed(client, world)
    return world


def ehr(services: Services, world: World, center: str) -> httpx.AsyncClient:
    code = {"FR": world.fr, "DE": world.de}[center]
    return client_as(services, Caller(id=f"ehr-{code}", role=Role.EHR, center=code))


async def centers(db: AsyncDatabase, kind: str, ident: str) -> set[str | None]:
    """The centers of the current document and of every version of a resource."""
    found = {doc.get("center", "missing") async for doc in db["history"].find({"type": kind, "id": ident})}
    current = await db[kind].find_one({"_id": ident})
    assert current is not None
    return found | {current.get("center", "missing")}


async def test_an_admin_transaction_derives_each_center_from_the_content(world: World, db: AsyncDatabase) -> None:
    expected = {"FR": {world.fr}, "DE": {world.de}, "shared": {None}, "both": {UNASSIGNED}}
    for name, (kind, center) in SEED.items():
        assert await centers(db, kind, world.ids[name]) == expected[center], name


@pytest.fixture
async def none_of_the_examples_records(db: AsyncDatabase) -> None:
    """No current resource that the example Bundle's ``ifNoneExist`` criteria (``identifier=system|value``) match:
    another module may have stored one (an ``FR-POI`` Organization that is not an ``ifp-center``), and the
    Bundle would then refer to it instead of creating its own."""
    for entry in fhirjson.loads(EXAMPLE_BUNDLE.read_bytes())["entry"]:
        criteria = entry["request"].get("ifNoneExist")
        if criteria is None:
            continue
        system, _, value = criteria.removeprefix("identifier=").partition("|")
        matching = {"sp.identifier": {"$elemMatch": {"s": system, "c": value}}}
        await db[entry["resource"]["resourceType"]].delete_many(matching)


@pytest.mark.usefixtures("none_of_the_examples_records")
async def test_the_example_submission_is_stored_in_its_center(client: httpx.AsyncClient, db: AsyncDatabase) -> None:
    response = await client.post("/fhir", content=EXAMPLE_BUNDLE.read_bytes(), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    for entry in parse(response)["entry"]:
        kind, ident = entry["response"]["location"].split("/fhir/")[-1].split("/")[:2]
        assert await centers(db, kind, ident) == {"FR-POI"}, kind


async def test_conformance_resources_are_shared(client: httpx.AsyncClient, db: AsyncDatabase) -> None:
    code_system = {"resourceType": "CodeSystem", "url": f"urn:test:{new_world().marker}", "status": "draft",
                   "content": "complete", "concept": [{"code": "a"}]}
    created = parse(await post(client, "CodeSystem", code_system))
    assert await centers(db, "CodeSystem", created["id"]) == {None}


async def test_an_ehr_writes_in_its_own_center_and_a_delete_keeps_it(services: Services, world: World,
                                                                       db: AsyncDatabase) -> None:
    async with ehr(services, world, "FR") as fr:
        organization = parse(await post(fr, "Organization", {"resourceType": "Organization", "name": "ward"}))
        patient = {"resourceType": "Patient", "managingOrganization": {"reference": f"Organization/{world.ids['lab']}"}}
        created = parse(await post(fr, "Patient", patient))
        assert (await fr.delete(f"/fhir/Patient/{created['id']}")).status_code == 204
    assert await centers(db, "Organization", organization["id"]) == {world.fr}
    assert await centers(db, "Patient", created["id"]) == {world.fr}  # the shared lab gives no center


async def test_an_ehr_may_not_name_another_centers_organization(services: Services, world: World) -> None:
    patient = {"resourceType": "Patient", "managingOrganization": {"reference": f"Organization/{world.ids['orgDE']}"}}
    async with ehr(services, world, "FR") as fr:
        response = await post(fr, "Patient", patient)
    assert response.status_code == 403
    assert parse(response)["issue"][0]["code"] == "forbidden"


async def test_a_transaction_with_one_entry_of_another_center_stores_nothing(services: Services, world: World,
                                                                              db: AsyncDatabase) -> None:
    marker = new_world().marker
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:tx", "value": marker}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": marker},
                      "subject": {"reference": f"Patient/{world.ids['pDE']}"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    async with ehr(services, world, "FR") as fr:
        response = await fr.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 403
    assert await db["Patient"].count_documents({"resource.identifier.value": marker}) == 0


async def test_an_ehrs_transaction_updating_another_centers_patient_is_refused_whether_read_ahead_or_not(
        services: Services, world: World, db: AsyncDatabase) -> None:
    """A transaction reads ahead the stored versions it updates when a type has several (``interactions/
    priming.py``), through the caller's access filter: another center's Patient is refused as when it is read on
    its own (a Bundle with one Patient), and nothing of the Bundle is stored."""
    marker = new_world().marker

    def put(name: str) -> dict[str, object]:
        return {"resource": {"resourceType": "Patient", "id": world.ids[name], "gender": "other",
                             "identifier": [{"system": "urn:tx", "value": marker}]},
                "request": {"method": "PUT", "url": f"Patient/{world.ids[name]}"}}

    answers = []
    async with ehr(services, world, "FR") as fr:
        for entries in ([put("pDE")], [put("pDE"), put("pFR")]):
            response = await fr.post("/fhir", content=body({"resourceType": "Bundle", "type": "transaction",
                                                            "entry": entries}), headers={"Content-Type": FHIR_JSON})
            answers.append((response.status_code, [i["code"] for i in parse(response)["issue"]]))
    assert answers[0] == answers[1] and answers[0][0] in (403, 404), answers
    assert await db["Patient"].count_documents({"resource.identifier.value": marker}) == 0
    stored = await db["Patient"].find_one({"_id": world.ids["pDE"]})
    assert stored is not None and stored["center"] == world.de and stored["resource"].get("gender") != "other"


async def test_documents_without_a_center_are_hidden_from_ehr_until_the_migration_gives_them_theirs(
        services: Services, client: httpx.AsyncClient, db: AsyncDatabase) -> None:
    world = new_world()
    await store_seed(client, world)
    for name, (kind, _) in SEED.items():  # as stored before centers existed
        await db[kind].update_one({"_id": world.ids[name]}, {"$unset": {"center": ""}})
        await db["history"].update_many({"type": kind, "id": world.ids[name]}, {"$unset": {"center": ""}})
    async with ehr(services, world, "FR") as fr:
        assert (await fr.get(f"/fhir/Patient/{world.ids['pFR']}")).status_code == 404  # fail closed
        assert await services.store.assign_missing_centers(SUPPORTED_TYPES) >= len(SEED)
        assert (await fr.get(f"/fhir/Patient/{world.ids['pFR']}")).status_code == 200
    await test_an_admin_transaction_derives_each_center_from_the_content(world, db)
    assert await services.store.assign_missing_centers(SUPPORTED_TYPES) == 0  # nothing left: idempotent


async def test_identical_conditional_creates_make_exactly_one_per_center(services: Services, world: World) -> None:
    value = new_world().marker
    criteria = f"identifier={quote('urn:cc|' + value, safe='')}"
    payload = body({"resourceType": "Patient", "identifier": [{"system": "urn:cc", "value": value}]})
    headers = {"Content-Type": FHIR_JSON, "If-None-Exist": criteria}
    async with ehr(services, world, "FR") as fr, ehr(services, world, "DE") as de:
        responses = await asyncio.gather(*[http.post("/fhir/Patient", content=payload, headers=headers)
                                           for http in (fr, de) * 4])
        ids = {http: {parse(r)["id"] for r in responses[i::2]} for i, http in enumerate((fr, de))}
        assert [sorted(r.status_code for r in responses[i::2]) for i in range(2)] == [[200, 200, 200, 201]] * 2
        assert len(ids[fr]) == len(ids[de]) == 1 and ids[fr] != ids[de]
        found = parse(await fr.get(f"/fhir/Patient?{criteria}"))
        assert [e["resource"]["id"] for e in found["entry"]] == list(ids[fr])


@pytest.fixture
async def fr_and_researcher(services: Services,
                            world: World) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    researcher = Caller(id="research-1", role=Role.RESEARCHER)
    async with ehr(services, world, "FR") as fr, client_as(services, researcher) as reader:
        yield fr, reader


@pytest.mark.parametrize("path", ["Patient/_history?_count=1", "Observation?_count=1",
                                  "Patient/{pFR}/$everything?_count=1"])
async def test_a_page_link_is_useless_to_another_client(
        path: str, world: World, fr_and_researcher: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    """Even to a researcher, who may read every page of its own: the link is FR's (``search/paging.py``)."""
    fr, researcher = fr_and_researcher
    first = parse(await fr.get("/fhir/" + path.format(pFR=world.ids["pFR"])))
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert (await fr.get(next_url)).status_code == 200
    refused = await researcher.get(next_url)
    assert refused.status_code == 410
    assert parse(refused)["resourceType"] == "OperationOutcome"


async def test_a_maintainers_reindex_reaches_the_clinical_data_it_may_not_read(services: Services,
                                                                                world: World) -> None:
    """Re-extracting index values is the server's maintenance (after a maintainer adds a SearchParameter), not a
    read: it processes every center's resources, and shows the maintainer counts only."""
    maintainer = Caller(id="maintainer-1", role=Role.MAINTAINER)
    async with client_as(services, maintainer) as http:
        assert (await http.get(f"/fhir/Organization/{world.ids['orgFR']}")).status_code == 403  # its role
        kickoff = await http.post("/fhir/Organization/$reindex")
        assert kickoff.status_code == 202, kickoff.text
        for _ in range(400):
            status = await http.get(kickoff.headers["content-location"])
            if status.status_code != 202:
                break
            await asyncio.sleep(0.05)
    assert status.status_code == 200, status.text
    processed = next(p["valueInteger"] for p in parse(status)["parameter"] if p["name"] == "processed")
    assert processed >= 3  # the seed's three Organizations at least


async def test_a_transactions_patient_takes_the_center_of_the_organization_its_if_none_exist_matched(
        client: httpx.AsyncClient, world: World, db: AsyncDatabase) -> None:
    # the matched Organization's center comes from the lookup's own read (the same transaction), not a second one
    organization = {"resourceType": "Organization", "identifier": [{"system": CENTER_SYSTEM, "value": world.fr}],
                    "name": "FR"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f1d3c1e-0000-4000-8000-000000000001", "resource": organization,
         "request": {"method": "POST", "url": "Organization",
                     "ifNoneExist": f"identifier={quote(CENTER_SYSTEM)}|{world.fr}"}},
        {"fullUrl": "urn:uuid:6f1d3c1e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Patient",
                      "managingOrganization": {"reference": "urn:uuid:6f1d3c1e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Patient"}}]}
    response = await client.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    matched, patient = (entry["response"] for entry in parse(response)["entry"])
    assert matched["status"].startswith("200") and matched["location"].split("/")[-3] == world.ids["orgFR"]
    assert await centers(db, "Patient", patient["location"].split("/")[-3]) == {world.fr}
