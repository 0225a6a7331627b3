"""Every parameter type and modifier over HTTP, on a registry-shaped data set small enough to read.

Expected ids are derived by hand from https://hl7.org/fhir/R4/search.html (sections named in each test).
Dates without a time zone are UTC calendar ranges (the server's documented choice, see
``fhir_server.search.values``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from tests.conftest import parse
from tests.search.golden_search import q
from tests.search_http.conftest import fresh, ids, search, store

B = "https://cml-registry.eu/fhir"
RR = f"{B}/CodeSystem/ifp-registration-reason"
CONCEPTS = f"{B}/CodeSystem/ifp-concepts"
PHASE = f"{B}/CodeSystem/ifp-disease-phase"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

FAILURE_SUBCATEGORIES = ["no-chr-3m", "no-cyr-6m", "no-mcyr-12m", "hematologic-relapse", "cytogenetic-relapse",
                         "progression-ap-bc"]

REGISTRATION_REASON: dict[str, Any] = {
    "resourceType": "CodeSystem", "id": "ifp-registration-reason", "url": RR, "status": "active",
    "content": "complete", "hierarchyMeaning": "is-a",
    "concept": [
        {"code": "failure", "display": "Lack of efficacy (failure)",
         "concept": [{"code": c} for c in FAILURE_SUBCATEGORIES]},
        {"code": "toxicity", "display": "Toxicity (leading to discontinuation)"},
    ],
}
FLAT: dict[str, Any] = {
    "resourceType": "CodeSystem", "id": "flat", "url": f"{B}/CodeSystem/ifp-disease-phase", "status": "active",
    "content": "complete", "concept": [{"code": "chronic"}, {"code": "accelerated"}, {"code": "blast"}],
}
PHASES_VS: dict[str, Any] = {
    "resourceType": "ValueSet", "id": "advanced-phases", "url": f"{B}/ValueSet/advanced-phases", "status": "active",
    "compose": {"include": [{"system": PHASE, "concept": [{"code": "accelerated"}, {"code": "blast"}]}]},
}


def org(ident: str, code: str, name: str, city: str, part_of: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Organization", "id": ident, "name": name,
        "identifier": [{"system": f"{B}/sid/center", "value": code}],
        "address": [{"city": city, "country": code[:2]}],
    }
    if part_of:
        resource["partOf"] = {"reference": f"Organization/{part_of}"}
    return resource


def patient(ident: str, pseudonym: str, gender: str, birth: str, center: str, family: str,
            **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, "gender": gender, "birthDate": birth,
            "identifier": [{"system": f"{B}/sid/patient", "value": pseudonym}], "name": [{"family": family}],
            "managingOrganization": {"reference": f"Organization/{center}"}, **extra}


def registration(ident: str, subject: str, reason: str, when: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": CONCEPTS, "code": "registration-reason",
                                 "display": "Reason for registration"}]},
            "subject": {"reference": f"Patient/{subject}"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": RR, "code": reason}]}, **extra}


def bcr_abl(ident: str, subject: dict[str, Any], value: str, when: str) -> dict[str, Any]:
    from decimal import Decimal

    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "69380-4", "display": "BCR-ABL1/ABL1 IS"}]},
            "subject": subject, "effectiveDateTime": when,
            "valueQuantity": {"value": Decimal(value), "unit": "%", "system": UCUM, "code": "%"}}


NETWORK = org("net", "EU-NET", "LeukemiaNet", "Mannheim")
POITIERS = org("poi", "FR-POI", "CHU de Poitiers", "Poitiers", part_of="net")
HEIDELBERG = org("hd", "DE-HD", "Universitätsklinikum Heidelberg", "Heidelberg")
P_A = patient("pa", "FR-POI-0001", "male", "1950-05-10", "poi", "Lévêque",
              meta={"profile": [f"{B}/StructureDefinition/ifp-patient"], "tag": [{"system": "urn:t", "code": "b1"}],
                    "security": [{"system": CONF, "code": "R"}]})
P_B = patient("pb", "FR-POI-0002", "female", "1961-11", "poi", "Martin",
              meta={"profile": [f"{B}/StructureDefinition/ifp-patient"]})
P_C = patient("pc", "DE-HD-0001", "female", "1972-01-30", "hd", "Martinez",
              identifier=[{"system": f"{B}/sid/patient", "value": "DE-HD-0001"},
                          {"type": {"coding": [{"system": V2, "code": "MR"}]}, "system": "urn:hd:mrn",
                           "value": "12345"}])
REG_A = registration("reg-a", "pa", "no-chr-3m", "2007-02-15")
REG_B = registration("reg-b", "pb", "progression-ap-bc", "2007-02",
                     component=[{"code": {"coding": [{"system": CONCEPTS, "code": "phase-at-registration"}]},
                                 "valueCodeableConcept": {"coding": [{"system": PHASE, "code": "accelerated"}]}}])
REG_C = registration("reg-c", "pc", "toxicity", "2007-02-15T23:30:00-05:00",
                     component=[{"code": {"coding": [{"system": CONCEPTS, "code": "phase-at-registration"}]},
                                 "valueCodeableConcept": {"coding": [{"system": PHASE, "code": "chronic"}]}}])
REG_OLD = registration("reg-old", "pa", "failure", "2006-12-31T22:00:00Z")  # a grouping code, as sent
LAB_A = bcr_abl("lab-a", {"reference": "Patient/pa"}, "12", "2007-06-01")
LAB_B = bcr_abl("lab-b", {"reference": "Patient/pb"}, "8.50", "2007-06-02")
LAB_EXT = bcr_abl("lab-ext", {"reference": "http://other.example/fhir/Patient/x9"}, "0.1", "2008-01-01")
LAB_ID = bcr_abl("lab-id", {"identifier": {"system": f"{B}/sid/patient", "value": "IT-ROM-0007"}}, "40",
                 "2008-01-02")
IMATINIB = {"resourceType": "MedicationStatement", "id": "ima-a", "status": "stopped",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01EA01"}]},
            "subject": {"reference": "Patient/pa"},
            "effectivePeriod": {"start": "2001-03-01", "end": "2006-12-31"}}
OPEN_ENDED = {**IMATINIB, "id": "ima-b", "status": "active", "subject": {"reference": "Patient/pb"},
              "effectivePeriod": {"start": "2005-07-01"}}

ALL = [NETWORK, POITIERS, HEIDELBERG, P_A, P_B, P_C, REG_A, REG_B, REG_C, REG_OLD, LAB_A, LAB_B, LAB_EXT, LAB_ID,
       IMATINIB, OPEN_ENDED, REGISTRATION_REASON, FLAT, PHASES_VS]


@pytest.fixture(scope="module")
async def data(http: httpx.AsyncClient, search_services: Services,
               search_db: AsyncDatabase) -> httpx.AsyncClient:
    await fresh(search_services, search_db)
    await store(http, *ALL)
    return http


async def found(client: httpx.AsyncClient, path: str, query: str) -> list[str]:
    """Sorted ids of the matches of ``query`` (written unencoded: ``a=1&b=2``)."""
    return sorted(ids(await search(client, path, [*q(query), ("_count", "50")])))


async def status(client: httpx.AsyncClient, path: str, query: str, **headers: str) -> tuple[int, Any]:
    r = await client.get(f"/fhir/{path}", params=q(query), headers=headers)
    return r.status_code, parse(r)


# -- string (search.html#string) ------------------------------------------------------------------------------

async def test_string_default_is_case_and_accent_insensitive_starts_with(data: httpx.AsyncClient) -> None:
    assert await found(data, "Organization", "name=universitats") == ["hd"]
    assert await found(data, "Patient", "family=LEVE") == ["pa"]
    assert await found(data, "Patient", "family=martin") == ["pb", "pc"]


async def test_string_exact_is_whole_value_and_case_sensitive(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "family:exact=Martin") == ["pb"]
    assert await found(data, "Patient", "family:exact=martin") == []


async def test_string_contains_matches_inside(data: httpx.AsyncClient) -> None:
    assert await found(data, "Organization", "name:contains=poit") == ["poi"]
    assert await found(data, "Patient", "family:contains=tin") == ["pb", "pc"]


async def test_a_nul_in_a_string_token_or_uri_value_matches_literally_and_is_no_server_error(
        data: httpx.AsyncClient) -> None:
    # MongoDB refuses a $regex holding a NUL byte: the value is escaped (found by tests/fuzz/)
    assert await found(data, "Patient", "family=mar\x00tin") == []
    assert await found(data, "Patient", "family:contains=\x00") == []
    assert await found(data, "Observation", "code:text=\x00") == []
    assert await found(data, "ValueSet", "url:below=http://x\x00") == []


async def test_string_on_address_parts(data: httpx.AsyncClient) -> None:
    assert await found(data, "Organization", "address-city=heidel") == ["hd"]
    assert await found(data, "Organization", "address=poitiers") == ["poi"]


# -- token (search.html#token) -------------------------------------------------------------------------------

async def test_token_system_and_code(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", f"identifier={B}/sid/patient|FR-POI-0001") == ["pa"]


async def test_token_code_alone_matches_any_system(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "identifier=12345") == ["pc"]


async def test_token_bar_code_matches_only_values_without_system(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "identifier=|12345") == []


async def test_token_system_bar_matches_any_code_of_the_system(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "identifier=urn:hd:mrn|") == ["pc"]


async def test_token_not_includes_resources_without_the_value(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "gender:not=female") == ["pa"]
    assert await found(data, "Observation", f"value-concept:not={RR}|toxicity") == [
        "lab-a", "lab-b", "lab-ext", "lab-id", "reg-a", "reg-b", "reg-old"]


async def test_token_text_searches_display(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "code:text=bcr-abl") == ["lab-a", "lab-b", "lab-ext", "lab-id"]


async def test_token_missing(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "component-code:missing=false") == ["reg-b", "reg-c"]
    assert await found(data, "Observation", "value-concept:missing=true") == ["lab-a", "lab-b", "lab-ext", "lab-id"]


async def test_token_of_type_matches_identifier_type_and_value(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", f"identifier:of-type={V2}|MR|12345") == ["pc"]
    assert await found(data, "Patient", f"identifier:of-type={V2}|MR|FR-POI-0001") == []


async def test_token_below_covers_the_six_failure_subcategories_and_failure_itself(
        data: httpx.AsyncClient) -> None:
    """search.html#token ``:below``: the code and its subsumees, from the CodeSystem stored on the server."""
    assert await found(data, "Observation", f"value-concept:below={RR}|failure") == ["reg-a", "reg-b", "reg-old"]
    assert await found(data, "Observation", f"value-concept:below={RR}|toxicity") == ["reg-c"]


async def test_token_above_finds_the_code_and_what_subsumes_it(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", f"value-concept:above={RR}|no-chr-3m") == ["reg-a", "reg-old"]


async def test_token_below_follows_a_hierarchy_changed_through_the_api(data: httpx.AsyncClient) -> None:
    """A new version of the CodeSystem (toxicity under failure, for the sake of the test) is used by the very
    next search (conformance epoch); then the original is restored."""
    changed = {**REGISTRATION_REASON, "concept": [
        {"code": "failure", "concept": [{"code": c} for c in [*FAILURE_SUBCATEGORIES, "toxicity"]]}]}
    await store(data, changed)
    try:
        assert await found(data, "Observation", f"value-concept:below={RR}|failure") == [
            "reg-a", "reg-b", "reg-c", "reg-old"]
    finally:
        await store(data, REGISTRATION_REASON)
    assert await found(data, "Observation", f"value-concept:below={RR}|failure") == ["reg-a", "reg-b", "reg-old"]


async def test_token_below_without_hierarchy_is_the_code_itself(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation",
                       f"component-value-concept:below={PHASE}|chronic") == ["reg-c"]


async def test_token_below_on_an_unknown_code_system_is_400(data: httpx.AsyncClient) -> None:
    code, outcome = await status(data, "Observation", "value-concept:below=urn:nowhere|x")
    assert code == 400
    assert "value-concept" in str(outcome) or "urn:nowhere" in str(outcome)


async def test_token_in_and_not_in_a_value_set(data: httpx.AsyncClient) -> None:
    vs = f"{B}/ValueSet/advanced-phases"
    assert await found(data, "Observation", f"component-value-concept:in={vs}") == ["reg-b"]
    assert "reg-c" in await found(data, "Observation", f"component-value-concept:not-in={vs}")
    assert "reg-b" not in await found(data, "Observation", f"component-value-concept:not-in={vs}")


async def test_filter_ss_sb_in_ni_are_below_above_in_and_not_in(data: httpx.AsyncClient) -> None:
    """search_filter.html#ops: ``ss`` the value subsumes a code of the resource (``:below``), ``sb`` the value is
    subsumed by one (``:above``), ``in``/``ni`` a value set; their code sets are resolved under ``or`` too."""
    vs = f"{B}/ValueSet/advanced-phases"
    assert await found(data, "Observation", f"_filter=value-concept ss {RR}|failure") == ["reg-a", "reg-b", "reg-old"]
    assert await found(data, "Observation", f"_filter=value-concept sb {RR}|no-chr-3m") == ["reg-a", "reg-old"]
    assert await found(data, "Observation", f"_filter=component-value-concept in {vs}") == ["reg-b"]
    outside = await found(data, "Observation", f"_filter=component-value-concept ni {vs}")
    assert "reg-c" in outside and "reg-b" not in outside
    either = f"_filter=value-concept ss {RR}|toxicity or component-value-concept in {vs}"
    assert await found(data, "Observation", either) == ["reg-b", "reg-c"]


async def test_token_in_a_value_set_matches_a_code_element_without_a_system(data: httpx.AsyncClient) -> None:
    """Patient.gender is a code: no system of its own, its value set's implied (R4's own value set here)."""
    genders = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert await found(data, "Patient", f"gender:in={genders}") == ["pa", "pb", "pc"]
    assert await found(data, "Patient", f"gender:not-in={genders}") == []


# -- reference (search.html#reference) -----------------------------------------------------------------------

async def test_reference_type_and_id(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "subject=Patient/pa") == ["lab-a", "reg-a", "reg-old"]


async def test_reference_id_alone(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "subject=pb") == ["lab-b", "reg-b"]


async def test_reference_absolute_url_on_this_server_is_the_relative_reference(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "subject=http://testserver/fhir/Patient/pc") == ["reg-c"]


async def test_reference_absolute_url_elsewhere(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "subject=http://other.example/fhir/Patient/x9") == ["lab-ext"]


async def test_reference_type_modifier(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "subject:Patient=pa") == ["lab-a", "reg-a", "reg-old"]
    assert await found(data, "Observation", "subject:Group=pa") == []


async def test_reference_identifier_modifier(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", f"subject:identifier={B}/sid/patient|IT-ROM-0007") == ["lab-id"]


async def test_chain_on_a_string(data: httpx.AsyncClient) -> None:
    """search.html#chaining: ``subject:Patient.name=``."""
    assert await found(data, "Observation", "subject:Patient.name=martin") == ["lab-b", "reg-b", "reg-c"]


async def test_chain_of_two_levels(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", f"subject:Patient.organization.identifier={B}/sid/center|DE-HD") == [
        "reg-c"]


async def test_chain_of_three_levels(data: httpx.AsyncClient) -> None:
    assert await found(data, "MedicationStatement", "subject:Patient.organization.partof.name=leukemianet") == [
        "ima-a", "ima-b"]


async def test_chain_without_type_uses_every_target_having_the_parameter(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "patient.gender=male") == ["lab-a", "reg-a", "reg-old"]


async def test_reverse_chain_has(data: httpx.AsyncClient) -> None:
    """search.html#has."""
    assert await found(data, "Patient", f"_has:Observation:subject:value-concept={RR}|toxicity") == ["pc"]


async def test_reverse_chain_nested(data: httpx.AsyncClient) -> None:
    assert await found(data, "Organization",
                       f"_has:Patient:organization:_has:Observation:subject:value-concept={RR}|toxicity") == ["hd"]


async def test_has_with_a_chain_inside(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "_has:Observation:patient:subject:Patient.gender=female") == ["pb", "pc"]


# -- date (search.html#date, #prefix) ------------------------------------------------------------------------

async def test_date_day_does_not_match_a_month_value(data: httpx.AsyncClient) -> None:
    """``date=2007-02-15`` does not match ``2007-02`` (its range is not inside the day)."""
    assert await found(data, "Observation", "date=2007-02-15") == ["reg-a"]


async def test_date_month_matches_days_and_times_within_it(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "date=2007-02") == ["reg-a", "reg-b", "reg-c"]


async def test_date_with_time_zone_is_compared_in_utc(data: httpx.AsyncClient) -> None:
    """23:30 at -05:00 is 04:30 UTC the next day; ``22:00Z`` on Dec 31 stays in 2006."""
    assert await found(data, "Observation", "date=2007-02-16") == ["reg-c"]
    assert await found(data, "Observation", "date=2007-02-15T23:30:00-05:00") == ["reg-c"]
    assert await found(data, "Observation", "date=2006") == ["reg-old"]


async def test_date_prefixes_on_partial_dates(data: httpx.AsyncClient) -> None:
    # gt: the range above 2007-02-15 ([02-16, ...)) intersects 2007-02 (the month value) and reg-c
    assert "reg-b" in await found(data, "Observation", "date=gt2007-02-15")
    assert await found(data, "Observation", "date=gt2007-02-15&code=registration-reason") == ["reg-b", "reg-c"]
    assert await found(data, "Observation", "date=lt2007-02-15&code=registration-reason") == ["reg-b", "reg-old"]
    assert await found(data, "Observation", "date=ge2007-02-15&code=registration-reason") == [
        "reg-a", "reg-b", "reg-c"]
    # le: below 2007-02-01 is (.., 02-01), which misses the month 2007-02 = [02-01, 03-01); the day does not
    # contain the month either
    assert await found(data, "Observation", "date=le2007-02-01&code=registration-reason") == ["reg-old"]
    assert await found(data, "Observation", "date=sa2007-02&code=registration-reason") == []
    assert await found(data, "Observation", "date=eb2007-02&code=registration-reason") == ["reg-old"]
    assert await found(data, "Observation", "date=ne2007-02&code=registration-reason") == ["reg-old"]


async def test_date_approximately(data: httpx.AsyncClient) -> None:
    # ap: the search range widened by 10 % of its distance to now: about 2 years around 2007 (and growing),
    # so 2007-06 and 2008-01 are near 2007-05-20; 1990 +/- 3.7 years reaches none of them
    assert await found(data, "Observation", f"date=ap2007-05-20&code={LOINC}|69380-4") == [
        "lab-a", "lab-b", "lab-ext", "lab-id"]
    assert await found(data, "Observation", f"date=ap1990-01-01&code={LOINC}|69380-4") == []


async def test_date_on_periods(data: httpx.AsyncClient) -> None:
    # the period 2001-03-01..2006-12-31 is not inside 2005, but overlaps "ge 2005"; the open period overlaps
    assert await found(data, "MedicationStatement", "effective=2005") == []
    assert await found(data, "MedicationStatement", "effective=ge2005") == ["ima-a", "ima-b"]
    assert await found(data, "MedicationStatement", "effective=lt2001-03-01") == []
    assert await found(data, "MedicationStatement", "effective=lt2001-03-02") == ["ima-a"]
    assert await found(data, "MedicationStatement", "effective=gt2030") == ["ima-b"]


async def test_date_and_makes_a_range(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", "date=ge2007-03&date=lt2008") == ["lab-a", "lab-b"]


# -- quantity / composite (search.html#quantity, #composite) --------------------------------------------------

async def test_quantity_prefixes_with_system_and_code(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", f"value-quantity=gt10|{UCUM}|%") == ["lab-a", "lab-id"]
    assert await found(data, "Observation", "value-quantity=le8.5") == ["lab-b", "lab-ext"]
    assert await found(data, "Observation", f"value-quantity=lt10|{UCUM}|mg") == []


async def test_quantity_precision_equality(data: httpx.AsyncClient) -> None:
    # search 8.5 is [8.45, 8.55): contains 8.50's range [8.495, 8.505); search 12 [11.5, 12.5) contains 12
    assert await found(data, "Observation", "value-quantity=8.5") == ["lab-b"]
    assert await found(data, "Observation", "value-quantity=12") == ["lab-a"]
    assert await found(data, "Observation", "value-quantity=12.0") == []
    assert await found(data, "Observation", "value-quantity=ne12&code=69380-4") == ["lab-b", "lab-ext", "lab-id"]


async def test_composite_code_value_quantity(data: httpx.AsyncClient) -> None:
    """The issue's example: ``code-value-quantity=http://loinc.org|69380-4$gt10``."""
    assert await found(data, "Observation", f"code-value-quantity={LOINC}|69380-4$gt10") == ["lab-a", "lab-id"]


async def test_composite_component_code_value_concept(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation",
                       f"component-code-value-concept={CONCEPTS}|phase-at-registration${PHASE}|chronic") == ["reg-c"]


# -- uri (search.html#uri) -----------------------------------------------------------------------------------

async def test_uri_exact_below_and_above(data: httpx.AsyncClient) -> None:
    assert await found(data, "CodeSystem", f"url={RR}") == ["ifp-registration-reason"]
    assert await found(data, "CodeSystem", f"url:below={B}/CodeSystem") == ["flat", "ifp-registration-reason"]
    assert await found(data, "CodeSystem", f"url:above={RR}/v2/extra") == ["ifp-registration-reason"]
    assert await found(data, "CodeSystem", f"url={B}/CodeSystem") == []


# -- common parameters (search.html#all) ---------------------------------------------------------------------

async def test_id_and_last_updated(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", "_id=pa,pc") == ["pa", "pc"]
    assert await found(data, "Patient", "_lastUpdated=gt2020-01-01") == ["pa", "pb", "pc"]
    assert await found(data, "Patient", "_lastUpdated=lt2020-01-01") == []


async def test_profile_tag_and_security(data: httpx.AsyncClient) -> None:
    assert await found(data, "Patient", f"_profile={B}/StructureDefinition/ifp-patient") == ["pa", "pb"]
    assert await found(data, "Patient", "_tag=urn:t|b1") == ["pa"]
    assert await found(data, "Patient", f"_security={CONF}|R") == ["pa"]
    assert await found(data, "Patient", "_tag:missing=true") == ["pb", "pc"]


async def test_or_with_commas_and_and_with_repeats(data: httpx.AsyncClient) -> None:
    assert await found(data, "Observation", f"value-concept={RR}|toxicity,{RR}|no-chr-3m") == ["reg-a", "reg-c"]
    assert await found(data, "Observation", f"value-concept={RR}|toxicity,{RR}|no-chr-3m&subject=pa") == ["reg-a"]
    assert await found(data, "Patient", "gender=female&gender=male") == []


async def test_escaped_comma_is_part_of_the_value(data: httpx.AsyncClient) -> None:
    await store(data, {**HEIDELBERG, "id": "comma", "name": "Hospital, Ward 3"})
    try:
        assert await found(data, "Organization", "name=hospital\\, ward") == ["comma"]
        assert await found(data, "Organization", "name=hospital,ward") == ["comma"]
    finally:
        assert (await data.delete("/fhir/Organization/comma")).status_code in (200, 204)
