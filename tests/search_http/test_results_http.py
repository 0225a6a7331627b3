"""Result shaping and request handling over HTTP (https://hl7.org/fhir/R4/search.html#return, #errors,
https://hl7.org/fhir/R4/http.html#paging, compartments: https://hl7.org/fhir/R4/compartmentdefinition.html).

The data set is the one of ``test_parameters_http``; expected results are derived by hand from it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from tests.conftest import parse
from tests.search.golden_search import q
from tests.search_http.conftest import fresh, ids, link, search, store
from tests.search_http.test_parameters_http import ALL, LAB_A, LOINC, RR

SUBSETTED = "SUBSETTED"
PATIENT_WITH_TEXT: dict[str, Any] = {
    "resourceType": "Patient", "id": "pt", "gender": "other", "birthDate": "1980-01-01",
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">pt</div>"},
    "contact": [{"gender": "male", "name": {"family": "Contact"}}],
    "managingOrganization": {"reference": "Organization/poi"},
}


@pytest.fixture(scope="module")
async def data(http: httpx.AsyncClient, search_services: Services,
               search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    await store(http, *ALL, PATIENT_WITH_TEXT)
    return http


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    r = await client.get(url)
    assert r.status_code == 200, r.text
    return parse(r)  # type: ignore[no-any-return]


async def walk(client: httpx.AsyncClient, first: dict[str, Any], relation: str = "next") -> list[str]:
    """Ids of every page, following ``relation`` links from ``first``."""
    found = ids(first)
    bundle = first
    while (url := link(bundle, relation)) is not None:
        bundle = await get(client, url)
        found += ids(bundle)
    return found


def tags(resource: dict[str, Any]) -> list[str]:
    return [t["code"] for t in resource.get("meta", {}).get("tag", [])]


# -- _sort (search.html#_sort) -------------------------------------------------------------------------------

async def test_sort_by_two_keys_with_id_as_final_tie_breaker(data: httpx.AsyncClient) -> None:
    # gender ascending (female, male, other), then birthdate descending; pb/pc are female: 1972 before 1961-11
    bundle = await search(data, "Patient", "_sort=gender,-birthdate")
    assert ids(bundle) == ["pc", "pb", "pa", "pt"]


async def test_sort_is_stable_on_ties(data: httpx.AsyncClient) -> None:
    # every registration Observation has status final: the order among them is the _id order, every time
    first = ids(await search(data, "Observation", "code=registration-reason&_sort=status"))
    assert first == ["reg-a", "reg-b", "reg-c", "reg-old"]
    paged = await walk(data, await search(data, "Observation", "code=registration-reason&_sort=status&_count=1"))
    assert paged == first


async def test_sort_descending_on_a_date_puts_missing_last(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "_sort=-birthdate&_count=10")
    assert ids(bundle) == ["pt", "pc", "pb", "pa"]


async def test_sort_on_a_quantity(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", f"code={LOINC}|69380-4&_sort=-value-quantity")
    assert ids(bundle) == ["lab-id", "lab-a", "lab-b", "lab-ext"]


async def test_pages_of_a_sort_on_a_quantity(data: httpx.AsyncClient) -> None:
    """Decimal sort values (stored as Decimal128) go through the page token."""
    first = await search(data, "Observation", f"code={LOINC}|69380-4&_sort=value-quantity&_count=1")
    assert await walk(data, first) == ["lab-ext", "lab-b", "lab-a", "lab-id"]


# -- _count and paging (search.html#count, http.html#paging) -----------------------------------------------

async def test_count_limits_the_page_and_links_lead_through_every_row_once(data: httpx.AsyncClient) -> None:
    first = await search(data, "Observation", "_sort=date&_count=3")
    assert len(ids(first)) == 3
    assert link(first, "previous") is None
    everything = ids(await search(data, "Observation", "_sort=date&_count=50"))
    assert await walk(data, first) == everything


async def test_default_and_maximum_count_come_from_the_settings(data: httpx.AsyncClient,
                                                                search_services: Services) -> None:
    assert search_services.settings.default_count == 20 and search_services.settings.max_count == 50
    bundle = await search(data, "Observation", "_count=100000")
    assert "_count=50" in (link(bundle, "self") or "")


async def test_pages_stay_correct_while_rows_are_inserted_and_deleted(data: httpx.AsyncClient) -> None:
    """Keyset paging: a row inserted before the page boundary is not returned twice and does not shift the next
    page; a row inserted after it appears; a deleted row of a later page is simply absent."""
    base = [{**LAB_A, "id": f"pg-{i}", "effectiveDateTime": f"2010-01-0{i}"} for i in range(1, 8)]
    await store(data, *base)
    try:
        page1 = await search(data, "Observation", "date=ge2010&_sort=date&_count=3")
        assert ids(page1) == ["pg-1", "pg-2", "pg-3"]
        await store(data, {**LAB_A, "id": "pg-early", "effectiveDateTime": "2010-01-02T12:00:00Z"},
                    {**LAB_A, "id": "pg-late", "effectiveDateTime": "2010-01-05T12:00:00Z"})
        assert (await data.delete("/fhir/Observation/pg-4")).status_code in (200, 204)
        page2 = await get(data, str(link(page1, "next")))
        assert ids(page2) == ["pg-5", "pg-late", "pg-6"]
        back = await get(data, str(link(page2, "previous")))
        # the three rows just before pg-5, as of now (pg-early, 12:00 on the 2nd, sorts after the whole day 2)
        assert ids(back) == ["pg-2", "pg-early", "pg-3"]
        page3 = await get(data, str(link(page2, "next")))
        assert ids(page3) == ["pg-7"]
        assert link(page3, "next") is None
        before = await get(data, str(link(back, "previous")))
        assert ids(before) == ["pg-1"]
        assert link(before, "previous") is None
        assert ids(await get(data, str(link(before, "next")))) == ["pg-2", "pg-early", "pg-3"]
    finally:
        for ident in ["pg-1", "pg-2", "pg-3", "pg-5", "pg-6", "pg-7", "pg-early", "pg-late"]:
            await data.delete(f"/fhir/Observation/{ident}")


async def test_a_tampered_page_token_is_400(data: httpx.AsyncClient) -> None:
    first = await search(data, "Observation", "_sort=date&_count=2")
    url = str(link(first, "next"))
    r = await data.get(url.replace("_page=", "_page=x"))
    assert r.status_code == 400


# -- _total (search.html#total) ------------------------------------------------------------------------------

async def test_total_none_estimate_and_accurate(data: httpx.AsyncClient) -> None:
    query = f"code={LOINC}|69380-4&_count=1"
    assert "total" not in await search(data, "Observation", query + "&_total=none")
    assert (await search(data, "Observation", query + "&_total=accurate"))["total"] == 4
    assert (await search(data, "Observation", query + "&_total=estimate"))["total"] >= 1


async def test_default_total_is_counted_within_the_budget(data: httpx.AsyncClient) -> None:
    """Without ``_total`` the total is counted within ``total_budget`` (test_total_http has the rest);
    ``_total=accurate`` and ``_summary=count`` count every match; ``_count=0`` gives the count alone."""
    assert (await search(data, "Observation", f"code={LOINC}|69380-4"))["total"] == 4
    assert (await search(data, "Observation", "_count=1"))["total"] == 8
    assert (await search(data, "Observation", "_count=1&_total=accurate"))["total"] == 8
    assert (await search(data, "Observation", "_summary=count"))["total"] == 8
    nothing = await search(data, "Observation", "_count=0")
    assert nothing["total"] == 8 and not nothing.get("entry")


async def test_total_accurate_on_a_later_page(data: httpx.AsyncClient) -> None:
    first = await search(data, "Observation", f"code={LOINC}|69380-4&_count=1&_total=accurate")
    second = await get(data, str(link(first, "next")))
    assert second["total"] == 4


# -- _summary and _elements (search.html#summary, #elements) --------------------------------------------------

async def test_summary_true_keeps_summary_elements_and_marks_subsetted(data: httpx.AsyncClient) -> None:
    resource = (await search(data, "Patient", "_id=pt&_summary=true"))["entry"][0]["resource"]
    assert resource["gender"] == "other" and resource["birthDate"] == "1980-01-01"
    assert "text" not in resource and "contact" not in resource
    assert SUBSETTED in tags(resource)


async def test_summary_text_keeps_text_id_meta_and_mandatory(data: httpx.AsyncClient) -> None:
    resource = (await search(data, "Patient", "_id=pt&_summary=text"))["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "text"}
    observation = (await search(data, "Observation", "_id=lab-a&_summary=text"))["entry"][0]["resource"]
    assert {"status", "code"} <= set(observation) and "valueQuantity" not in observation


async def test_summary_data_drops_only_text(data: httpx.AsyncClient) -> None:
    resource = (await search(data, "Patient", "_id=pt&_summary=data"))["entry"][0]["resource"]
    assert "text" not in resource and resource["contact"] == [{"gender": "male", "name": {"family": "Contact"}}]
    assert SUBSETTED in tags(resource)


async def test_summary_count_gives_the_total_only(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", f"code={LOINC}|69380-4&_summary=count")
    assert bundle["total"] == 4 and not bundle.get("entry")


async def test_summary_false_is_the_whole_resource(data: httpx.AsyncClient) -> None:
    resource = (await search(data, "Patient", "_id=pt&_summary=false"))["entry"][0]["resource"]
    assert "text" in resource and SUBSETTED not in tags(resource)


async def test_elements_selects_top_level_elements(data: httpx.AsyncClient) -> None:
    resource = (await search(data, "Patient", "_id=pt&_elements=gender"))["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "gender"}
    assert SUBSETTED in tags(resource)


async def test_elements_names_a_choice_element_without_its_type(data: httpx.AsyncClient) -> None:
    resource = (await search(data, "Observation", "_id=lab-a&_elements=value,subject"))["entry"][0]["resource"]
    assert resource["valueQuantity"]["unit"] == "%" and resource["subject"] == {"reference": "Patient/pa"}
    assert "effectiveDateTime" not in resource


# -- _include / _revinclude (search.html#include) ------------------------------------------------------------

async def test_include_adds_referenced_resources_once(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", "code=registration-reason&_include=Observation:subject")
    assert sorted(ids(bundle)) == ["reg-a", "reg-b", "reg-c", "reg-old"]
    assert sorted(ids(bundle, "include")) == ["Patient/pa", "Patient/pb", "Patient/pc"]


async def test_include_with_target_type(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", "_id=reg-a&_include=Observation:subject:Group")
    assert ids(bundle, "include") == []


async def test_include_iterate_follows_included_resources(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", "_id=reg-c&_include=Observation:subject"
                          "&_include:iterate=Patient:organization")
    assert sorted(ids(bundle, "include")) == ["Organization/hd", "Patient/pc"]


async def test_include_iterate_goes_several_levels(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", "_id=reg-a&_include=Observation:subject"
                          "&_include:iterate=Patient:organization&_include:iterate=Organization:partof")
    assert sorted(ids(bundle, "include")) == ["Organization/net", "Organization/poi", "Patient/pa"]


async def test_include_without_iterate_does_not_follow_included_resources(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation", "_id=reg-c&_include=Observation:subject"
                          "&_include=Patient:organization")
    assert ids(bundle, "include") == ["Patient/pc"]


async def test_revinclude(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "_id=pb&_revinclude=Observation:subject")
    assert ids(bundle) == ["pb"]
    assert sorted(ids(bundle, "include")) == ["Observation/lab-b", "Observation/reg-b"]


async def test_revinclude_iterate(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Organization", "_id=hd&_revinclude=Patient:organization"
                          "&_revinclude:iterate=Observation:subject")
    assert sorted(ids(bundle, "include")) == ["Observation/reg-c", "Patient/pc"]


async def test_include_star_follows_every_reference_parameter(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "_id=pa&_include=*")
    assert ids(bundle, "include") == ["Organization/poi"]
    bundle = await search(data, "Observation", "_id=reg-b&_include=Observation:*")
    assert ids(bundle, "include") == ["Patient/pb"]


async def test_revinclude_star_finds_every_referring_resource(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "_id=pb&_revinclude=*")
    assert sorted(ids(bundle, "include")) == ["MedicationStatement/ima-b", "Observation/lab-b",
                                              "Observation/reg-b"]


async def test_include_and_revinclude_together_without_duplicates(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "_id=pa,pb&_include=Patient:organization"
                          "&_revinclude=MedicationStatement:subject")
    assert sorted(ids(bundle, "include")) == ["MedicationStatement/ima-a", "MedicationStatement/ima-b",
                                              "Organization/poi"]


# -- POST _search, system search (http.html#search) ----------------------------------------------------------

async def test_post_search_is_the_same_search(data: httpx.AsyncClient) -> None:
    r = await data.post("/fhir/Observation/_search", data={"subject": "Patient/pa", "_sort": "date"},
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    bundle = parse(r)
    assert ids(bundle) == ids(await search(data, "Observation", "subject=Patient/pa&_sort=date"))
    assert ids(bundle) == ["reg-old", "reg-a", "lab-a"]
    self_link = urlsplit(str(link(bundle, "self")))
    assert self_link.path == "/fhir/Observation" and ("subject", "Patient/pa") in parse_qsl(self_link.query)


async def test_post_search_combines_url_and_body_parameters(data: httpx.AsyncClient) -> None:
    r = await data.post("/fhir/Observation/_search?code=registration-reason", data={"subject": "pa"})
    assert r.status_code == 200, r.text
    assert sorted(ids(parse(r))) == ["reg-a", "reg-old"]


async def test_system_search_with_type(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "", "_type=Patient,Organization&_id=pa,poi")
    assert sorted(ids(bundle)) == ["pa", "poi"]
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "match")
    assert kinds == ["Organization", "Patient"]


async def test_system_search_on_a_common_parameter(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "", f"_profile={RR.replace('CodeSystem/ifp-registration-reason', '')}"
                                    "StructureDefinition/ifp-patient")
    assert sorted(ids(bundle)) == ["pa", "pb"]


async def test_system_search_pages_through_equal_ids_of_different_types(data: httpx.AsyncClient) -> None:
    """Ids are unique per type only: ``Patient/same`` and ``Organization/same`` both come, once each."""
    await store(data, {"resourceType": "Patient", "id": "same"},
                {"resourceType": "Organization", "id": "same", "name": "Same"},  # org-1: a name or an identifier
                {"resourceType": "Patient", "id": "same2"})
    try:
        first = await search(data, "", "_type=Patient,Organization&_id=same,same2&_count=1")
        pages = [first]
        while (url := link(pages[-1], "next")) is not None:
            pages.append(await get(data, url))
        seen = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for p in pages for e in p.get("entry", [])]
        assert sorted(seen) == ["Organization/same", "Patient/same", "Patient/same2"]
    finally:
        for path in ["Patient/same", "Organization/same", "Patient/same2"]:
            await data.delete(f"/fhir/{path}")


# -- unknown and invalid parameters (search.html#errors) -----------------------------------------------------

async def test_lenient_ignores_unknown_parameters_and_the_self_link_shows_what_was_applied(
        data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "gender=male&shoe-size=42&_sort=shoe-size")
    assert ids(bundle) == ["pa"]
    applied = dict(parse_qsl(urlsplit(str(link(bundle, "self"))).query))
    assert applied.get("gender") == "male" and "shoe-size" not in applied and "_sort" not in applied
    outcomes = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and "shoe-size" in str(outcomes[0])


async def test_lenient_is_the_default_and_can_be_asked_for(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient", "gender=male&shoe-size=42", Prefer="handling=lenient")
    assert ids(bundle) == ["pa"]


async def test_strict_rejects_unknown_parameters(data: httpx.AsyncClient) -> None:
    r = await data.get("/fhir/Patient", params=q("gender=male&shoe-size=42"), headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert "shoe-size" in r.text


@pytest.mark.parametrize(("path", "query", "name"), [
    ("Patient", "birthdate=not-a-date", "birthdate"),
    ("Patient", "birthdate=xx2020", "birthdate"),
    ("Observation", "value-quantity=gtabc", "value-quantity"),
    ("Observation", "code-value-quantity=http://loinc.org|69380-4", "code-value-quantity"),
    ("Patient", "_count=many", "_count"),
    ("Patient", "_summary=maybe", "_summary"),
    ("Patient", "_total=some", "_total"),
    ("Patient", "_include=nonsense", "_include"),
    ("Patient", "gender:exact=male", "gender"),
    ("Patient", "identifier=a|b|c", "identifier"),
    ("Observation", "subject=Patient/pa/extra", "subject"),
    ("Patient", "active:missing=maybe", "active"),
])
async def test_invalid_values_are_400_naming_the_parameter(data: httpx.AsyncClient, path: str, query: str,
                                                           name: str) -> None:
    for handling in ("lenient", "strict"):
        r = await data.get(f"/fhir/{path}", params=q(query), headers={"Prefer": f"handling={handling}"})
        assert r.status_code == 400, (query, r.text)
        outcome = parse(r)
        assert outcome["resourceType"] == "OperationOutcome"
        assert name in outcome["issue"][0]["diagnostics"]


# -- compartments (compartmentdefinition-patient.html) ------------------------------------------------------

async def test_compartment_search_finds_the_patients_resources(data: httpx.AsyncClient) -> None:
    assert sorted(ids(await search(data, "Patient/pa/Observation"))) == ["lab-a", "reg-a", "reg-old"]
    assert ids(await search(data, "Patient/pa/MedicationStatement")) == ["ima-a"]


async def test_compartment_search_takes_search_parameters(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient/pa/Observation", f"value-concept:below={RR}|failure&_sort=-date")
    assert ids(bundle) == ["reg-a", "reg-old"]
    assert str(link(bundle, "self")).startswith("http://testserver/fhir/Patient/pa/Observation?")


async def test_compartment_search_of_a_type_outside_the_compartment_is_empty(data: httpx.AsyncClient) -> None:
    assert ids(await search(data, "Patient/pa/Organization")) == []


async def test_compartment_search_pages(data: httpx.AsyncClient) -> None:
    first = await search(data, "Patient/pa/Observation", "_sort=date&_count=2")
    assert await walk(data, first) == ["reg-old", "reg-a", "lab-a"]
    assert str(link(first, "next")).startswith("http://testserver/fhir/Patient/pa/Observation?")


async def test_compartment_search_of_every_type_finds_the_whole_compartment(data: httpx.AsyncClient) -> None:
    """http.html#search: ``GET [base]/Patient/[id]/*`` searches every type of the compartment (pa, its three
    Observations and its MedicationStatement; Organization/poi is referred to, not in the compartment)."""
    bundle = await search(data, "Patient/pa/*")
    found = sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"])
    assert found == ["MedicationStatement/ima-a", "Observation/lab-a", "Observation/reg-a", "Observation/reg-old",
                     "Patient/pa"]
    assert str(link(bundle, "self")) == "http://testserver/fhir/Patient/pa/*"
    narrowed = await search(data, "Patient/pa/*", "_type=MedicationStatement")
    assert ids(narrowed) == ["ima-a"]


async def test_compartment_search_of_every_type_pages(data: httpx.AsyncClient) -> None:
    first = await search(data, "Patient/pa/*", "_count=2&_sort=_id")
    assert len(await walk(data, first)) == 5
    assert str(link(first, "next")).startswith("http://testserver/fhir/Patient/pa/*?")


async def test_compartment_search_of_every_type_takes_only_common_parameters(data: httpx.AsyncClient) -> None:
    r = await data.get("/fhir/Patient/pa/*?code=x", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert "code" in parse(r)["issue"][0]["diagnostics"]


async def test_compartment_of_another_type_is_404(data: httpx.AsyncClient) -> None:
    r = await data.get("/fhir/Organization/poi/Patient")
    assert r.status_code == 404


async def test_post_search_without_a_body_searches_by_the_url_alone(data: httpx.AsyncClient) -> None:
    """A client may put every parameter in the URL of a POST _search and send no body at all."""
    r = await data.post("/fhir/Observation/_search?subject=Patient/pa&_sort=date")
    assert r.status_code == 200, r.text
    assert ids(parse(r)) == ["reg-old", "reg-a", "lab-a"]


async def test_post_search_with_a_body_of_another_media_type_is_415(data: httpx.AsyncClient) -> None:
    r = await data.post("/fhir/Observation/_search", content=b'{"subject": "pa"}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 415, r.text
    assert parse(r)["issue"][0]["diagnostics"].endswith("not 'application/json'")
