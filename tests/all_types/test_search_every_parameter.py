"""Search with every R4 search parameter of every type: for the first official example of each type, every
parameter that indexes a value of it finds it again by that value (search.html; token, string, reference, date,
number, quantity, uri and composite), with the value written as a client would write it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.search.extract import extract_index_values
from fhir_server.search.registry import SearchParam, SearchParameterRegistry
from fhir_server.services import Services
from tests.all_types.examples import load
from tests.all_types.test_every_type import FIRST
from tests.all_types.test_official_examples import REFUSED
from tests.conftest import parse, put


def _escape(value: str) -> str:
    """search.html#escaping: ``\\``, ``,``, ``$`` and ``|`` in a value are escaped."""
    for char in ("\\", ",", "$", "|"):
        value = value.replace(char, "\\" + char)
    return value


def _number(value: Any) -> str | None:
    text = str(value.to_decimal()) if hasattr(value, "to_decimal") else str(value)
    return None if "Infinity" in text or "NaN" in text else text


def _query_value(kind: str, entry: Any) -> str | None:
    """A query value that the indexed ``entry`` of a parameter of type ``kind`` matches (None: none to write)."""
    if kind == "token":
        if not entry.get("c"):
            return None
        return f"{_escape(entry['s'])}|{_escape(entry['c'])}" if entry.get("s") else _escape(entry["c"])
    if kind == "string":
        return _escape(entry["x"]) if entry.get("x") else None
    if kind == "reference":
        return entry.get("r")
    if kind == "uri":
        return _escape(entry) if isinstance(entry, str) else None
    if kind == "date":
        low = entry.get("lo")
        return f"ge{low.isoformat()}" if low is not None and low.year > 1 else None
    if kind in ("number", "quantity"):
        number = _number(entry["vl"]) if entry.get("vl") is not None else None
        return f"ge{number}" if number is not None else None
    return None


def _composite_value(registry: SearchParameterRegistry, param: SearchParam, kind: str, entry: Any) -> str | None:
    parts = []
    for i in range(len(param.components)):
        component = registry.component_param(param, i, kind)
        value = _query_value(component.type, entry.get(f"k{i}")) if component and entry.get(f"k{i}") else None
        if value is None:
            return None
        parts.append(value)
    return "$".join(parts)


def _criteria(registry: SearchParameterRegistry, resource: dict[str, Any]) -> list[tuple[str, str]]:
    kind = resource["resourceType"]
    out = []
    for code, entries in extract_index_values(registry, resource).items():
        param = registry.get(kind, code)
        if param is None or not isinstance(entries, list) or not entries:
            continue
        entry = entries[0]
        value = (_composite_value(registry, param, kind, entry) if param.type == "composite"
                 else _query_value(param.type, entry))
        if value is not None:
            out.append((code, value))
    return out


@pytest.mark.parametrize("name", sorted(FIRST.values()))
async def test_every_parameter_finds_the_example_by_its_own_value(big_client: httpx.AsyncClient,
                                                                  services: Services, name: str) -> None:
    example = load(name)
    kind, ident = example["resourceType"], example["id"]
    if name in REFUSED:
        pytest.skip("the example breaks a rule of R4 and is refused (test_official_examples.REFUSED)")
    assert (await put(big_client, f"{kind}/{ident}", example)).status_code in (200, 201)
    criteria = _criteria(services.search_parameters, example)
    found = await big_client.get(f"/fhir/{kind}", params=[("_id", ident), *criteria],
                                 headers={"Prefer": "handling=strict"})
    assert found.status_code == 200, found.text
    if [e["resource"]["id"] for e in parse(found).get("entry", [])] == [ident]:
        return
    missing = []
    for code, value in criteria:  # which parameter does not find it
        one = parse(await big_client.get(f"/fhir/{kind}", params=[("_id", ident), (code, value)]))
        if not one.get("entry"):
            missing.append((code, value))
    assert missing == []


def test_the_examples_exercise_every_parameter_type(services: Services) -> None:
    registry = services.search_parameters
    kinds = {registry.get(load(name)["resourceType"], code).type  # type: ignore[union-attr]
             for name in FIRST.values() for code, _ in _criteria(registry, load(name))}
    assert kinds == {"token", "string", "reference", "date", "number", "quantity", "uri", "composite"}
