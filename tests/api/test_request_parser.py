"""The one parser of the RESTful API's URLs (https://hl7.org/fhir/R4/http.html#summary), as HTTP requests and
Bundle entries both use it: what each URL names, and how a URL of no interaction fails."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.interactions.bundle.parse import EntryBody
from fhir_server.interactions.request import FhirRequest, Interaction, parse_request

PATIENT = {"resourceType": "Patient", "id": "p1"}


class _FormBody(EntryBody):
    """A ``POST _search`` body, as HTTP reads it."""

    async def form(self) -> list[tuple[str, str]]:
        return [("gender", "female")]


async def _parse(method: str, url: str, body: Any = PATIENT, **headers: str) -> FhirRequest:
    path, _, query = url.partition("?")
    source = _FormBody(None) if path.endswith("_search") else EntryBody(body)
    return await parse_request(method, path, query, headers, source)


async def _status(method: str, url: str, body: Any = PATIENT) -> int:
    with pytest.raises(FhirError) as raised:
        await _parse(method, url, body)
    return raised.value.status


@pytest.mark.parametrize(("method", "url", "interaction"), [
    ("GET", "", Interaction.SEARCH_SYSTEM),
    ("POST", "_search", Interaction.SEARCH_SYSTEM),
    ("GET", "metadata", Interaction.CAPABILITIES),
    ("GET", "_history", Interaction.HISTORY_SYSTEM),
    ("GET", "$export", Interaction.OPERATION_SYSTEM),
    ("GET", "Patient", Interaction.SEARCH_TYPE),
    ("POST", "Patient/_search", Interaction.SEARCH_TYPE),
    ("POST", "Patient", Interaction.CREATE),
    ("PUT", "Patient?identifier=a|b", Interaction.UPDATE),
    ("DELETE", "Patient?identifier=a|b", Interaction.DELETE),
    ("GET", "Patient/_history", Interaction.HISTORY_TYPE),
    ("POST", "Patient/$validate", Interaction.OPERATION_TYPE),
    ("GET", "Patient/p1", Interaction.READ),
    ("PUT", "Patient/p1", Interaction.UPDATE),
    ("DELETE", "Patient/p1", Interaction.DELETE),
    ("GET", "Patient/p1/_history", Interaction.HISTORY_INSTANCE),
    ("GET", "Patient/p1/_history/2", Interaction.VREAD),
    ("GET", "Patient/p1/$everything", Interaction.OPERATION_INSTANCE),
    ("GET", "Patient/p1/Observation", Interaction.SEARCH_COMPARTMENT),
])
async def test_each_url_names_its_interaction(method: str, url: str, interaction: Interaction) -> None:
    assert (await _parse(method, url)).interaction is interaction


async def test_a_post_search_adds_its_form_to_the_query_parameters() -> None:
    assert (await _parse("POST", "Patient/_search?_count=1")).params == [("_count", "1"), ("gender", "female")]


async def test_a_url_keeps_its_parts() -> None:
    vread = await _parse("GET", "Patient/p1/_history/2?_pretty=true")
    assert (vread.resource_type, vread.resource_id, vread.version_id, vread.params) == (
        "Patient", "p1", "2", [("_pretty", "true")])
    compartment = await _parse("GET", "Patient/p1/Observation?code=x")
    assert (compartment.resource_type, compartment.compartment) == ("Observation", ("Patient", "p1"))
    operation = await _parse("GET", "Patient/p1/$everything")
    assert (operation.operation, operation.resource_type, operation.resource_id) == ("everything", "Patient", "p1")
    conditional = await _parse("PUT", "Patient?identifier=a%7Cb")
    assert (conditional.resource_id, conditional.query) == (None, "identifier=a%7Cb")


async def test_fhir_headers_become_request_fields() -> None:
    request = await _parse("GET", "Patient/p1", **{"if-none-match": 'W/"1"', "if-match": 'W/"2"',
                                                   "if-none-exist": "identifier=a|b", "prefer": "return=minimal",
                                                   "if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert (request.if_none_match, request.if_match, request.if_none_exist, request.prefer_return) == (
        'W/"1"', 'W/"2"', "identifier=a|b", "minimal")
    assert request.if_modified_since == datetime(2015, 10, 21, 7, 28, tzinfo=UTC)


async def test_if_modified_since_of_a_bundle_entry_is_a_fhir_instant() -> None:
    request = await _parse("GET", "Patient/p1", **{"if-modified-since": "2015-10-21T07:28:00Z"})
    assert request.if_modified_since == datetime(2015, 10, 21, 7, 28, tzinfo=UTC)


async def test_an_unknown_return_preference_counts_as_none() -> None:
    assert (await _parse("POST", "Patient", prefer="return=everything")).prefer_return is None


async def test_a_patch_entrys_binary_is_its_json_patch() -> None:
    data = base64.b64encode(json.dumps([{"op": "remove", "path": "/active"}]).encode()).decode()
    request = await _parse("PATCH", "Patient/p1", {"resourceType": "Binary", "data": data})
    assert list(request.body.operations) == [{"op": "remove", "path": "/active"}]


async def test_a_patch_entrys_parameters_is_its_fhirpath_patch() -> None:
    operation = {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
                                               {"name": "path", "valueString": "Patient.active"}]}
    request = await _parse("PATCH", "Patient/p1", {"resourceType": "Parameters", "parameter": [operation]})
    assert [(o.type, o.path) for o in request.body.operations] == [("delete", "Patient.active")]


async def test_post_to_the_base_tells_a_transaction_from_a_batch() -> None:
    assert (await _parse("POST", "", {"resourceType": "Bundle", "type": "transaction"})).interaction \
        is Interaction.TRANSACTION
    assert await _status("POST", "", {"resourceType": "Bundle", "type": "collection"}) == 400


@pytest.mark.parametrize(("method", "url", "status"), [
    ("GET", "Unknown", 404), ("GET", "Unknown/p1", 404), ("PUT", "Unknown/p1", 404),
    ("GET", "Patient/p1/_history/1/extra", 404), ("GET", "Patient//p1", 404), ("GET", "a/b/c/d/e", 404),
    ("GET", "Observation/p1/Condition", 404), ("GET", "Patient/p1/Unknown", 404),
    ("POST", "Patient/p1", 405), ("PATCH", "Patient", 405),
    ("PUT", "Patient", 405), ("DELETE", "Patient", 405), ("DELETE", "Patient/$validate", 405),
    ("GET", "Patient/_search", 405), ("PUT", "metadata", 405), ("PUT", "$export", 405),
    ("POST", "Patient/p1/_history", 405), ("HEAD", "Patient/p1/$everything", 405), ("HEAD", "$export", 405),
    ("HEAD", "Patient/_search", 405),
])
async def test_a_url_of_no_interaction_fails_like_http(method: str, url: str, status: int) -> None:
    assert await _status(method, url) == status


@pytest.mark.parametrize("url", ["Patient/_history/1", "Patient/_search/x", "Patient/_history/1/_history/2"])
async def test_history_or_search_of_a_type_followed_by_more_is_no_endpoint(url: str) -> None:
    """``_history`` is no id (R4 ids hold no "_"): not a compartment search of a type '1'."""
    with pytest.raises(FhirError) as raised:
        await _parse("GET", url)
    assert raised.value.status == 404
    assert f"No such endpoint: GET {url}" in str(raised.value.outcome())


async def test_a_method_the_url_does_not_take_is_405_before_its_type_is_looked_at() -> None:
    assert await _status("POST", "Unknown/p1") == 405


async def test_create_and_update_need_a_resource() -> None:
    assert await _status("POST", "Patient", None) == 400
    assert await _status("PUT", "Patient/p1", None) == 400


async def test_a_head_reads_like_a_get() -> None:
    request = await _parse("HEAD", "Patient/p1")
    assert request.interaction is Interaction.READ and request.method == "HEAD"


async def test_a_patch_of_a_type_with_criteria_is_a_conditional_patch() -> None:
    operation = {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
                                               {"name": "path", "valueString": "Patient.active"}]}
    request = await _parse("PATCH", "Patient?identifier=a|b", {"resourceType": "Parameters", "parameter": [operation]})
    assert request.interaction is Interaction.PATCH and request.resource_id is None
    assert request.query == "identifier=a|b"


@pytest.mark.parametrize(("method", "url", "allow"), [
    ("POST", "Patient/p1", "DELETE, GET, HEAD, PATCH, PUT"),
    ("PUT", "metadata", "GET, HEAD"),
    ("POST", "Patient/p1/_history", "GET, HEAD"),
    ("DELETE", "Patient/$validate", "GET, POST"),
    ("HEAD", "$export", "DELETE, GET, POST"),
])
async def test_a_405_names_the_methods_the_url_takes(method: str, url: str, allow: str) -> None:
    """RFC 9110 15.5.6: the origin server MUST send an Allow header field with a 405."""
    with pytest.raises(FhirError) as raised:
        await _parse(method, url)
    assert raised.value.status == 405 and raised.value.headers == {"Allow": allow}
