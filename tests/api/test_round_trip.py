"""What is stored and served back is the resource as sent: every official R4 example of our types
round-trips unchanged (extensions, primitive extensions such as _birthDate, decimal precision)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import (
    EXAMPLES,
    FHIR_JSON,
    OFFICIAL_EXAMPLE_COUNT,
    load_example,
    official_examples,
    parse,
    put,
)

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


async def test_equal_decimals_written_differently_keep_their_own_digits_in_current_and_history(
        client: httpx.AsyncClient) -> None:
    # 1.5, 1.50 and 1.500 are equal numbers: each is stored (once encoded for both documents) as written
    raw_body = (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":['
                b'{"code":{"text":"a"},"valueQuantity":{"value":1.5}},{"code":{"text":"b"},"valueQuantity":'
                b'{"value":1.50}},{"code":{"text":"c"},"valueQuantity":{"value":1.500}},{"code":{"text":"d"},'
                b'"valueQuantity":{"value":1.5}}]}')
    for _ in range(2):  # the second write converts each value again, or remembers it
        r = await client.post("/fhir/Observation", content=raw_body, headers={"Content-Type": FHIR_JSON})
        assert r.status_code == 201, r.text
        ident = parse(r)["id"]
        for path in (f"/fhir/Observation/{ident}", f"/fhir/Observation/{ident}/_history/1"):
            stored = (await client.get(path)).content
            values = [part.split(b"}")[0] for part in stored.split(b'"value":')[1:]]
            assert values == [b"1.5", b"1.50", b"1.500", b"1.5"], path
