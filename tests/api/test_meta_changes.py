"""``$meta-add`` and ``$meta-delete`` (https://hl7.org/fhir/R4/resource-operation-meta-add.html,
https://hl7.org/fhir/R4/resource-operation-meta-delete.html): profiles, tags and security labels are sets (a tag by
system and code), changed in place: "executing this operation does not cause a new version of the resource to be
created". Who may is in the isolation table (``tests/security/test_isolation_table.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import FHIR_JSON, body, parse, patient, unique

TAGS = "urn:test:tags"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IFP_PATIENT = "https://cml-registry.eu/fhir/StructureDefinition/ifp-patient"


def _parameters(**meta: Any) -> bytes:
    return body({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]})


async def _call(client: httpx.AsyncClient, url: str, **meta: Any) -> httpx.Response:
    return await client.post(url, content=_parameters(**meta), headers={"Content-Type": FHIR_JSON})


def _returned(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    [returned] = parse(response)["parameter"]
    assert returned["name"] == "return"
    return dict(returned["valueMeta"])


async def _tagged_patient(client: httpx.AsyncClient, code: str) -> str:
    resource = patient(unique(), meta={"tag": [{"system": TAGS, "code": code, "display": "first"}]})
    response = await client.post("/fhir/Patient", content=body(resource), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text
    return str(parse(response)["id"])


def _codes(meta: dict[str, Any], element: str = "tag") -> list[str]:
    return [coding["code"] for coding in meta.get(element, [])]


async def _found_by_tag(client: httpx.AsyncClient, ident: str, code: str) -> bool:
    bundle = parse(await client.get(f"/fhir/Patient?_id={ident}&_tag={quote(f'{TAGS}|{code}')}"))
    return bundle["total"] == 1


async def test_meta_add_adds_tags_labels_and_profiles_as_sets_without_a_new_version(
        client: httpx.AsyncClient) -> None:
    ident = await _tagged_patient(client, "a")
    before = await client.get(f"/fhir/Patient/{ident}")
    meta = _returned(await _call(
        client, f"/fhir/Patient/{ident}/$meta-add",
        tag=[{"system": TAGS, "code": "a", "display": "other display"}, {"system": TAGS, "code": "b"}],
        security=[{"system": CONFIDENTIALITY, "code": "R"}], profile=["http://example.org/unknown-profile"]))
    assert _codes(meta) == ["a", "b"] and meta["tag"][0]["display"] == "first"  # a held tag is not added again
    assert _codes(meta, "security") == ["R"] and meta["profile"] == ["http://example.org/unknown-profile"]
    after = await client.get(f"/fhir/Patient/{ident}")
    assert parse(after)["meta"] == meta
    assert after.headers["etag"] == before.headers["etag"] == 'W/"1"'
    assert meta["versionId"] == "1" and meta["lastUpdated"] == parse(before)["meta"]["lastUpdated"]
    history = parse(await client.get(f"/fhir/Patient/{ident}/_history"))
    assert history["total"] == 1 and history["entry"][0]["resource"]["meta"] == meta
    assert await _found_by_tag(client, ident, "b")  # the search values follow


async def test_meta_delete_removes_by_system_and_code_whatever_the_display(client: httpx.AsyncClient) -> None:
    ident = await _tagged_patient(client, "a")
    _returned(await _call(client, f"/fhir/Patient/{ident}/$meta-add", tag=[{"system": TAGS, "code": "b"}],
                          security=[{"system": CONFIDENTIALITY, "code": "R"}]))
    meta = _returned(await _call(client, f"/fhir/Patient/{ident}/$meta-delete",
                                 tag=[{"system": TAGS, "code": "a", "display": "not the stored one"}],
                                 security=[{"system": CONFIDENTIALITY, "code": "R"}]))
    assert _codes(meta) == ["b"] and "security" not in meta
    assert parse(await client.get(f"/fhir/Patient/{ident}"))["meta"] == meta
    assert not await _found_by_tag(client, ident, "a") and await _found_by_tag(client, ident, "b")
    vread = parse(await client.get(f"/fhir/Patient/{ident}/_history/1"))
    assert vread["meta"] == meta


async def test_meta_add_of_what_is_held_and_meta_delete_of_what_is_not_change_nothing(
        client: httpx.AsyncClient) -> None:
    ident = await _tagged_patient(client, "a")
    stored = parse(await client.get(f"/fhir/Patient/{ident}"))["meta"]
    assert _returned(await _call(client, f"/fhir/Patient/{ident}/$meta-add", tag=[{"system": TAGS, "code": "a"}])) \
        == stored
    assert _returned(await _call(client, f"/fhir/Patient/{ident}/$meta-delete",
                                 tag=[{"system": TAGS, "code": "z"}], profile=["http://example.org/p"])) == stored


async def test_meta_add_of_a_profile_the_resource_does_not_conform_to_is_422(client: httpx.AsyncClient) -> None:
    ident = await _tagged_patient(client, "a")
    response = await _call(client, f"/fhir/Patient/{ident}/$meta-add", profile=[IFP_PATIENT])
    assert response.status_code == 422, response.text
    assert any("managingOrganization" in str(issue) for issue in parse(response)["issue"])
    assert "profile" not in parse(await client.get(f"/fhir/Patient/{ident}"))["meta"]


async def test_meta_add_without_a_meta_parameter_or_with_a_bad_one_is_400(client: httpx.AsyncClient) -> None:
    ident = await _tagged_patient(client, "a")
    url = f"/fhir/Patient/{ident}/$meta-add"
    empty = await client.post(url, content=body({"resourceType": "Parameters"}), headers={"Content-Type": FHIR_JSON})
    assert empty.status_code == 400
    assert (await _call(client, url, tag=[{"display": "neither system nor code"}])).status_code == 400
    assert (await _call(client, url, profile="not a list")).status_code == 400


async def test_meta_add_is_post_only_and_answers_404_and_410_as_an_update_would(client: httpx.AsyncClient) -> None:
    ident = await _tagged_patient(client, "a")
    assert (await client.get(f"/fhir/Patient/{ident}/$meta-add")).status_code == 405
    unknown = await _call(client, f"/fhir/Patient/{unique('none-')}/$meta-add", tag=[{"system": TAGS, "code": "b"}])
    assert unknown.status_code == 404
    assert (await client.delete(f"/fhir/Patient/{ident}")).status_code == 204
    gone = await _call(client, f"/fhir/Patient/{ident}/$meta-delete", tag=[{"system": TAGS, "code": "a"}])
    assert gone.status_code == 410


# -- on a version: [type]/[id]/_history/[vid]/$meta-add ("can also be used on historical entries") -----------


async def _patient_with_two_versions(client: httpx.AsyncClient) -> str:
    ident = await _tagged_patient(client, "a")
    updated = patient(unique(), id=ident, gender="male", meta={"tag": [{"system": TAGS, "code": "a"}]})
    response = await client.put(f"/fhir/Patient/{ident}", content=body(updated), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    return ident


async def test_meta_add_on_an_old_version_changes_that_version_only(client: httpx.AsyncClient) -> None:
    ident = await _patient_with_two_versions(client)
    meta = _returned(await _call(client, f"/fhir/Patient/{ident}/_history/1/$meta-add",
                                 tag=[{"system": TAGS, "code": "reviewed"}]))
    assert _codes(meta) == ["a", "reviewed"] and meta["versionId"] == "1"
    assert parse(await client.get(f"/fhir/Patient/{ident}/_history/1"))["meta"] == meta
    assert _codes(parse(await client.get(f"/fhir/Patient/{ident}"))["meta"]) == ["a"]
    assert not await _found_by_tag(client, ident, "reviewed")  # search sees current versions only
    assert _returned(await client.get(f"/fhir/Patient/{ident}/_history/1/$meta")) == meta


async def test_meta_delete_on_the_current_version_by_its_number_is_the_instance_call(
        client: httpx.AsyncClient) -> None:
    ident = await _patient_with_two_versions(client)
    meta = _returned(await _call(client, f"/fhir/Patient/{ident}/_history/2/$meta-delete",
                                 tag=[{"system": TAGS, "code": "a"}]))
    assert "tag" not in meta and meta["versionId"] == "2"
    assert parse(await client.get(f"/fhir/Patient/{ident}"))["meta"] == meta
    assert not await _found_by_tag(client, ident, "a")
    assert _codes(parse(await client.get(f"/fhir/Patient/{ident}/_history/1"))["meta"]) == ["a"]


async def test_operations_on_a_version_answer_as_a_vread_would(client: httpx.AsyncClient) -> None:
    ident = await _patient_with_two_versions(client)
    tag = {"tag": [{"system": TAGS, "code": "b"}]}
    assert (await _call(client, f"/fhir/Patient/{ident}/_history/9/$meta-add", **tag)).status_code == 404
    assert (await client.get(f"/fhir/Patient/{ident}/_history/x/$meta")).status_code == 404
    assert (await client.delete(f"/fhir/Patient/{ident}")).status_code == 204
    assert (await _call(client, f"/fhir/Patient/{ident}/_history/3/$meta-add", **tag)).status_code == 410
    assert _codes(_returned(await client.get(f"/fhir/Patient/{ident}/_history/1/$meta"))) == ["a"]
    # an operation R4 does not define on versions
    assert (await client.get(f"/fhir/Patient/{ident}/_history/1/$everything")).status_code == 404
