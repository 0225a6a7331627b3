"""Property-based fuzzing of FHIR XML (https://hl7.org/fhir/R4/xml.html): any valid resource the write fuzzing
generates survives JSON -> XML -> JSON exactly, and no XML body, well-formed or not, is ever a 5xx.

The exact round trip is compared as ``checks.canonical`` text: number text included (``1.50`` is not ``1.5``), as
the JSON wire would carry it (a decimal without a point is an integer there too)."""

from __future__ import annotations

import httpx
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import fhirjson
from fhir_server.xml_format import resource_from_xml, resource_to_xml
from tests.fuzz.checks import assert_not_server_error, canonical
from tests.fuzz.strategies import resources

FHIR_XML = "application/fhir+xml"
PATIENT = (b'<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir"><id value="p"/>'
           b'<name id="n1"><family value="Smith"/><given value="Ann"/><given><extension url="http://x">'
           b'<valueString value="y"/></extension></given></name><gender value="female"/></Patient>')


@given(resource=resources())
def test_any_valid_resource_round_trips_through_xml_exactly(resource: dict[str, object]) -> None:
    as_on_the_wire = fhirjson.loads(fhirjson.dumps(resource))
    assert canonical(resource_from_xml(resource_to_xml(as_on_the_wire))) == canonical(as_on_the_wire)


@given(raw=st.binary(max_size=2048))
async def test_any_body_declared_fhir_xml_is_never_a_server_error(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/fhir/Patient", content=raw, headers={"Content-Type": FHIR_XML})
    assert_not_server_error(response)
    assert response.status_code in (201, 400, 413, 422), response.text[:500]


@given(at=st.integers(min_value=0, max_value=len(PATIENT)), cut=st.integers(min_value=0, max_value=40),
       inserted=st.text(alphabet='<>/="&;: abcxyzvaluegiven\n#', max_size=12))
async def test_damaged_fhir_xml_is_never_a_server_error(client: httpx.AsyncClient, at: int, cut: int,
                                                        inserted: str) -> None:
    damaged = PATIENT[:at] + inserted.encode() + PATIENT[at + cut:]
    response = await client.post("/fhir/Patient", content=damaged,
                                 headers={"Content-Type": FHIR_XML, "Accept": FHIR_XML})
    assert_not_server_error(response)
    assert response.status_code in (201, 400, 422), response.text[:500]
    assert response.content.startswith(b"<?xml")  # errors too come in the format asked for
