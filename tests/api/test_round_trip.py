"""What is stored and served back is the resource as sent: every official R4 example of our types
round-trips unchanged (extensions, primitive extensions such as _birthDate, decimal precision)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import EXAMPLES, OFFICIAL_EXAMPLE_COUNT, load_example, official_examples, parse, put

EXAMPLE_FILES = [p.name for p in official_examples()]
# Official examples that break a rule of the specification itself, refused (422) at the offending element.
NONCONFORMING = {
    # observation.html#vitals: a vital sign (f202 is a body temperature, LOINC 8310-5) SHALL conform to its
    # vital signs profile (bodytemp); the base vitalsigns profile requires effective[x] (1..1), f202 has none.
    "Observation-f202.json": "Observation.effective",
}


def _without_server_meta(resource: dict) -> dict:
    out = dict(resource)
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def test_official_examples_are_present() -> None:
    assert len(EXAMPLE_FILES) == OFFICIAL_EXAMPLE_COUNT


@pytest.mark.parametrize("name", [n for n in EXAMPLE_FILES if n not in NONCONFORMING])
async def test_official_example_round_trips_unchanged(client: httpx.AsyncClient, name: str) -> None:
    example = load_example(name)
    path = f"{example['resourceType']}/{example['id']}"
    r = await put(client, path, example)
    assert r.status_code in (200, 201), r.text
    read = await client.get(f"/fhir/{path}")
    assert _without_server_meta(parse(read)) == _without_server_meta(example)


@pytest.mark.parametrize("name", sorted(NONCONFORMING))
async def test_nonconforming_official_example_is_refused_at_the_offending_element(client: httpx.AsyncClient,
                                                                                  name: str) -> None:
    example = load_example(name)
    r = await put(client, f"{example['resourceType']}/{example['id']}", example)
    assert r.status_code == 422, r.text
    errors = [i for i in parse(r)["issue"] if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [[NONCONFORMING[name]]]


async def test_decimal_precision_survives_in_the_bytes(client: httpx.AsyncClient) -> None:
    for name, tokens in (("Observation-decimal.json", ("1.00", "1E-22", "1.000000000000000000E-245")),
                         ("Observation-body-height.json", ("66.899999999999991",))):
        example = load_example(name)
        source = (EXAMPLES / name).read_text()
        await put(client, f"Observation/{example['id']}", example)
        raw = (await client.get(f"/fhir/Observation/{example['id']}")).content
        for token in tokens:
            assert token in source
            assert f":{token}".encode() in raw, token


async def test_trailing_zero_decimal_is_kept(client: httpx.AsyncClient) -> None:
    observation = {"resourceType": "Observation", "id": "dec-150", "status": "final",
                   "code": {"text": "x"}, "valueQuantity": {"value": 1.50, "unit": "mg"}}
    raw_body = b'{"resourceType":"Observation","id":"dec-150","status":"final","code":{"text":"x"},' \
               b'"valueQuantity":{"value":1.50,"unit":"mg"}}'
    r = await client.put("/fhir/Observation/dec-150", content=raw_body,
                         headers={"Content-Type": "application/fhir+json"})
    assert r.status_code in (200, 201)
    assert b'"value":1.50' in (await client.get("/fhir/Observation/dec-150")).content
    assert observation["id"] == "dec-150"
