"""A Binary in its native form on the RESTful API (https://hl7.org/fhir/R4/binary.html#rest): written as the
content it holds, read back as that content unless the client asks for the FHIR resource."""

from __future__ import annotations

import base64

import httpx
import pytest

from fhir_server.context import Caller
from fhir_server.permissions import Role
from fhir_server.services import Services
from fhir_server.xml_format import resource_from_xml
from tests.conftest import FHIR_JSON, client_as, parse, post, put, unique

PDF = b"%PDF-1.4\n\x00\x01\x02 not really a PDF\xff"


async def _native(client: httpx.AsyncClient, content: bytes, content_type: str, **headers: str) -> dict:
    r = await client.post("/fhir/Binary", content=content, headers={"Content-Type": content_type, **headers})
    assert r.status_code == 201, r.text
    return dict(parse(r))


async def test_content_posted_to_binary_is_stored_as_a_binary_of_its_media_type(client: httpx.AsyncClient) -> None:
    stored = await _native(client, PDF, "application/pdf", **{"X-Security-Context": "Patient/p-binary"})
    assert stored["contentType"] == "application/pdf"
    assert base64.b64decode(stored["data"]) == PDF
    assert stored["securityContext"] == {"reference": "Patient/p-binary"}
    resource = parse(await client.get(f"/fhir/Binary/{stored['id']}"))  # the test client asks for FHIR JSON
    assert resource == stored


async def test_read_of_a_binary_without_a_fhir_accept_answers_its_content(client: httpx.AsyncClient) -> None:
    stored = await _native(client, PDF, "application/pdf", **{"X-Security-Context": "Patient/p-binary"})
    for accept in ("*/*", "application/pdf", "image/png, */*;q=0.1"):
        r = await client.get(f"/fhir/Binary/{stored['id']}", headers={"Accept": accept})
        assert r.status_code == 200, (accept, r.text)
        assert r.content == PDF
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["etag"] == 'W/"1"'
        assert r.headers["last-modified"]
        assert r.headers["x-security-context"] == "Patient/p-binary"
        # the client's content is served from the server's origin: never run, never sniffed as something else
        assert r.headers["content-security-policy"] == "sandbox"
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("asked", [
    {"headers": {"Accept": FHIR_JSON}},
    {"headers": {"Accept": "application/fhir+json;q=0.9, application/pdf;q=0.8"}},
    {"headers": {"Accept": "application/pdf"}, "params": {"_format": "json"}},
    {"headers": {"Accept": "*/*"}, "params": {"_summary": "false"}},
    {"headers": {"Accept": "*/*"}, "params": {"_elements": "contentType"}},
    {"headers": {"Accept": "application/json"}},  # generic JSON, and the content is not JSON: the resource
])
async def test_read_of_a_binary_asking_for_fhir_answers_the_resource(client: httpx.AsyncClient,
                                                                     asked: dict) -> None:
    stored = await _native(client, PDF, "application/pdf")
    r = await client.get(f"/fhir/Binary/{stored['id']}", **asked)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    assert parse(r)["resourceType"] == "Binary"
    assert parse(r)["contentType"] == "application/pdf"


async def test_read_of_json_content_with_a_generic_json_accept_answers_the_content(
        client: httpx.AsyncClient) -> None:
    content = b'{"policy": "permit"}'
    stored = await _native(client, content, "application/vnd.xacml+json")
    r = await client.get(f"/fhir/Binary/{stored['id']}", headers={"Accept": "application/json"})
    assert r.content == content
    assert r.headers["content-type"] == "application/vnd.xacml+json"


async def test_read_of_a_binary_as_fhir_xml_is_the_resource_in_xml(client: httpx.AsyncClient) -> None:
    stored = await _native(client, PDF, "application/pdf")
    r = await client.get(f"/fhir/Binary/{stored['id']}", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+xml")
    resource = resource_from_xml(r.content)
    assert resource["resourceType"] == "Binary" and base64.b64decode(resource["data"]) == PDF


async def test_read_of_a_binary_in_a_format_the_server_does_not_write_is_406(client: httpx.AsyncClient) -> None:
    stored = await _native(client, PDF, "application/pdf")
    r = await client.get(f"/fhir/Binary/{stored['id']}?_format=ttl")
    assert r.status_code == 406
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_read_of_an_unknown_binary_with_a_native_accept_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/fhir/Binary/{unique('none')}", headers={"Accept": "image/png"})
    assert r.status_code == 404
    assert parse(r)["resourceType"] == "OperationOutcome"


async def test_put_of_content_updates_the_binary_of_the_url(client: httpx.AsyncClient) -> None:
    binary_id = unique("bin")
    first = await client.put(f"/fhir/Binary/{binary_id}", content=b"first",
                             headers={"Content-Type": "text/plain; charset=utf-8"})
    assert first.status_code == 201, first.text
    second = await client.put(f"/fhir/Binary/{binary_id}", content=b"second", headers={"Content-Type": "text/plain"})
    assert second.status_code == 200, second.text
    assert parse(second)["id"] == binary_id
    current = await client.get(f"/fhir/Binary/{binary_id}", headers={"Accept": "text/plain"})
    assert (current.content, current.headers["etag"]) == (b"second", 'W/"2"')
    old = await client.get(f"/fhir/Binary/{binary_id}/_history/1", headers={"Accept": "*/*"})
    assert (old.content, old.headers["content-type"]) == (b"first", "text/plain; charset=utf-8")


async def test_head_of_a_binary_has_its_content_length_and_no_content(client: httpx.AsyncClient) -> None:
    stored = await _native(client, PDF, "application/pdf")
    r = await client.head(f"/fhir/Binary/{stored['id']}", headers={"Accept": "*/*"})
    assert r.status_code == 200
    assert (r.content, r.headers["content-length"], r.headers["content-type"]) == (b"", str(len(PDF)),
                                                                                  "application/pdf")


async def test_another_resource_posted_to_binary_is_content(client: httpx.AsyncClient) -> None:
    """binary.html#rest: FHIR content is taken as is, except a Binary resource itself."""
    patient_json = b'{"resourceType": "Patient", "active": true}'
    stored = await _native(client, patient_json, FHIR_JSON)
    assert stored["contentType"] == FHIR_JSON
    assert base64.b64decode(stored["data"]) == patient_json
    r = await client.get(f"/fhir/Binary/{stored['id']}", headers={"Accept": "*/*"})
    assert r.content == patient_json


async def test_a_binary_resource_posted_to_binary_is_the_resource(client: httpx.AsyncClient) -> None:
    resource = {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(b"hi").decode()}
    r = await post(client, "Binary", resource)
    assert r.status_code == 201, r.text
    assert parse(r)["data"] == resource["data"]
    assert (await client.get(f"/fhir/Binary/{parse(r)['id']}", headers={"Accept": "*/*"})).content == b"hi"


async def test_base64_with_line_breaks_is_served_decoded(client: httpx.AsyncClient) -> None:
    """base64Binary allows whitespace between groups (as MIME encoders wrap lines at 76 characters)."""
    encoded = base64.encodebytes(PDF * 8).decode("ascii")  # lines of 76 characters
    assert "\n" in encoded.strip()
    r = await post(client, "Binary", {"resourceType": "Binary", "contentType": "application/pdf", "data": encoded})
    assert r.status_code == 201, r.text
    assert (await client.get(f"/fhir/Binary/{parse(r)['id']}", headers={"Accept": "*/*"})).content == PDF * 8


async def test_malformed_json_posted_to_binary_as_fhir_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Binary", content=b'{"resourceType": "Binary",', headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert parse(r)["issue"][0]["code"] == "structure"


async def test_a_content_type_that_cannot_be_a_header_is_served_as_octet_stream(client: httpx.AsyncClient) -> None:
    binary_id = unique("bin")
    resource = {"resourceType": "Binary", "id": binary_id, "contentType": "text\nplain",
                "data": base64.b64encode(b"x").decode()}
    assert (await put(client, f"Binary/{binary_id}", resource)).status_code == 201
    r = await client.get(f"/fhir/Binary/{binary_id}", headers={"Accept": "*/*"})
    assert (r.content, r.headers["content-type"]) == (b"x", "application/octet-stream")


async def test_native_read_of_another_centers_binary_is_404(services: Services) -> None:
    """The native form reads through the same access rules as the resource."""
    async with client_as(services, Caller("ehr-a", Role.EHR, center="BINARY-A")) as center_a:
        stored = await _native(center_a, PDF, "application/pdf")
        mine = await center_a.get(f"/fhir/Binary/{stored['id']}", headers={"Accept": "*/*"})
        assert mine.content == PDF
    async with client_as(services, Caller("ehr-b", Role.EHR, center="BINARY-B")) as center_b:
        r = await center_b.get(f"/fhir/Binary/{stored['id']}", headers={"Accept": "*/*"})
        assert r.status_code == 404
        assert r.content != PDF
