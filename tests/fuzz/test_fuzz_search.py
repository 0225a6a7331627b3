"""Property-based fuzzing of search (search.html): parameters drawn from the server's own search parameter
registry for every supported clinical type, with generated values, prefixes and modifiers (valid ones and odd
ones), chains, result parameters, over GET and POST ``_search``, lenient and strict.

Properties: no answer is a 5xx; a 200 is a searchset Bundle; anything else is a 4xx OperationOutcome.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import fhirjson
from fhir_server.search.registry import SearchParam
from fhir_server.services import Services
from tests.conftest import FHIR_JSON, load_example, official_examples, put
from tests.fuzz.checks import assert_not_server_error, outcome_of
from tests.fuzz.strategies import FUZZED_TYPES, PRIMITIVE_STRATEGIES, decimals

MODIFIERS = {  # search.html#modifiers, by parameter type
    "string": ["exact", "contains", "missing"],
    "token": ["text", "not", "above", "below", "in", "not-in", "of-type", "missing"],
    "reference": ["identifier", "missing", "above", "below", "Patient", "Observation"],
    "uri": ["above", "below", "missing"],
    "date": ["missing"], "number": ["missing"], "quantity": ["missing"], "composite": ["missing"],
    "special": ["missing"],
}
ODD_MODIFIERS = ["", "fuzz", "exact:exact", "Patient.name", "iterate", "MISSING", "\u202e"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"]
RESULT_PARAMETERS = ["_sort", "_count", "_total", "_summary", "_elements", "_include", "_revinclude", "_id",
                     "_lastUpdated", "_has:Observation:subject:code", "_type", "_format", "_page", "_tag",
                     "_profile", "_security", "_list", "_text", "_content", "_filter", "_query"]

_WORD = st.text(string.ascii_letters + string.digits + "-._", min_size=1, max_size=10)
_ODD_TEXT = st.text(min_size=0, max_size=16)  # any unicode, NUL, lone surrogates, commas, pipes, dollars
_NUMBER = st.one_of(decimals().map(str), st.sampled_from(["1e400", "-0", "1.000000000000000000001", "NaN",
                                                          "Infinity", "1" * 60, ".5", "5."]))


def _prefixed(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, st.sampled_from(PREFIXES), values)


def _token() -> st.SearchStrategy[str]:
    code = st.one_of(_WORD, _ODD_TEXT)
    system = st.one_of(PRIMITIVE_STRATEGIES["uri"], _WORD, st.just(""))
    return st.one_of(code, st.builds(lambda s, c: f"{s}|{c}", system, code), system.map(lambda s: f"{s}|"))


VALUES: dict[str, st.SearchStrategy[str]] = {
    "string": st.one_of(_WORD, _ODD_TEXT),
    "token": _token(),
    "reference": st.one_of(
        st.builds(lambda t, i: f"{t}/{i}", st.sampled_from(["Patient", "Observation", "Nope", ""]), _WORD),
        _WORD, PRIMITIVE_STRATEGIES["uri"].map(lambda u: f"{u}/Patient/1"), _ODD_TEXT),
    "date": _prefixed(st.one_of(PRIMITIVE_STRATEGIES["dateTime"], PRIMITIVE_STRATEGIES["instant"], _ODD_TEXT,
                                st.sampled_from(["2020-13", "0000", "2020-02-30", "9999-12-31T23:59:59Z"]))),
    "number": _prefixed(_NUMBER),
    "quantity": _prefixed(st.builds(lambda n, s, c: f"{n}|{s}|{c}", _NUMBER, st.one_of(st.just(""), _WORD),
                                    st.one_of(st.just(""), _WORD))),
    "uri": st.one_of(PRIMITIVE_STRATEGIES["uri"], _ODD_TEXT),
    "composite": st.builds(lambda a, b: f"{a}${b}", _token(), st.one_of(_prefixed(_NUMBER), _WORD, _ODD_TEXT)),
    "special": _ODD_TEXT,
}


@st.composite
def _criterion(draw: st.DrawFn, parameters: dict[str, SearchParam]) -> tuple[str, str]:
    """One ``name[:modifier]=value`` of the resource type whose parameters are given."""
    code = draw(st.sampled_from(sorted(parameters)))
    parameter = parameters[code]
    name = code
    choice = draw(st.integers(0, 9))
    if choice < 3:
        name += ":" + draw(st.sampled_from(MODIFIERS.get(parameter.type, ["missing"])))
    elif choice == 3:
        name += ":" + draw(st.sampled_from(ODD_MODIFIERS))
    elif choice == 4 and parameter.type == "reference":  # a chain
        name += draw(st.sampled_from(["", ":Patient", ":Observation"])) + "." + draw(
            st.sampled_from(["name", "identifier", "code", "subject:Patient.gender", "nope", "_id"]))
    if name.endswith(":missing"):
        value = draw(st.sampled_from(["true", "false", "maybe", ""]))
    elif draw(st.integers(0, 5)) == 0:  # several values, OR-ed
        value = ",".join(draw(st.lists(VALUES[parameter.type], min_size=2, max_size=3)))
    else:
        value = draw(VALUES.get(parameter.type, _ODD_TEXT))
    return name, value


@st.composite
def _result_parameter(draw: st.DrawFn, parameters: dict[str, SearchParam]) -> tuple[str, str]:
    name = draw(st.sampled_from(RESULT_PARAMETERS))
    codes = sorted(parameters)
    value = draw(st.one_of(
        st.sampled_from(codes).map(lambda c: draw(st.sampled_from(["", "-"])) + c),
        st.integers(-5, 10**12).map(str), st.sampled_from(["true", "count", "data", "text", "accurate", "none",
                                                           "estimate", "*", "Observation:subject", "Patient"]),
        _ODD_TEXT))
    return name, value


def _to_text(value: str) -> str:
    # a URL carries UTF-8: a lone surrogate goes as the bytes it would have had, the server sees invalid UTF-8
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if value else value


@pytest.fixture(scope="module")
async def stored_examples(client: httpx.AsyncClient) -> None:
    """Something to find: a quarter of HL7's examples of the supported types."""
    for path in official_examples()[::4]:
        example = load_example(path.name)
        await put(client, f"{example['resourceType']}/{example['id']}", example)


@given(data=st.data())
async def test_a_generated_search_is_never_a_server_error(client: httpx.AsyncClient, services: Services,
                                                          stored_examples: None, data: Any) -> None:
    resource_type = data.draw(st.sampled_from(FUZZED_TYPES), label="type")
    parameters = dict(services.search_parameters.for_type(resource_type))
    query = data.draw(st.lists(_criterion(parameters), min_size=1, max_size=3), label="criteria")
    query += data.draw(st.lists(_result_parameter(parameters), max_size=2), label="result parameters")
    query = [(name, _to_text(value)) for name, value in query]
    headers = {"Prefer": data.draw(st.sampled_from(["handling=lenient", "handling=strict"]), label="Prefer")}
    if data.draw(st.booleans(), label="POST _search"):
        response = await client.post(f"/fhir/{resource_type}/_search", content=urlencode(query).encode(),
                                     headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    else:
        response = await client.get(f"/fhir/{resource_type}?{urlencode(query)}", headers=headers)
    assert_not_server_error(response)
    if response.status_code == 200:
        if response.headers["content-type"].startswith(FHIR_JSON):
            bundle = fhirjson.loads(response.content)
            assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", response.text[:500]
    else:
        outcome_of(response)


FILTER_OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap", "sa", "eb", "pr", "po", "ss", "sb",
                    "in", "ni", "re", "xx", "EQ"]


@st.composite
def _filter_comparison(draw: st.DrawFn, parameters: dict[str, SearchParam]) -> str:
    """``path op value`` (search_filter.html) over the type's parameters, chains, odd names and values."""
    code = draw(st.sampled_from(sorted(parameters)))
    path = code + draw(st.sampled_from(["", "", ".name", ".identifier", ".subject.name", "[type eq x].target"]))
    value = draw(st.one_of(VALUES.get(parameters[code].type, _ODD_TEXT).map(_to_text).map(json.dumps),
                           VALUES.get(parameters[code].type, _ODD_TEXT).filter(lambda v: v and " " not in v),
                           st.sampled_from(["true", "false", "loinc|1234-5", "2020", "5.4|ucum|mg"])))
    return f"{path} {draw(st.sampled_from(FILTER_OPERATORS))} {value}"


@st.composite
def _filter(draw: st.DrawFn, parameters: dict[str, SearchParam], depth: int = 0) -> str:
    choice = draw(st.integers(0, 5 if depth < 3 else 0))
    if choice <= 2:
        return draw(_filter_comparison(parameters))
    left, right = draw(_filter(parameters, depth + 1)), draw(_filter(parameters, depth + 1))
    if choice == 3:
        return f"{left} {draw(st.sampled_from(['and', 'or', 'OR', 'And']))} {right}"
    if choice == 4:
        return f"({left}) and {right}"
    return f"not ({left})"


@st.composite
def _damaged(draw: st.DrawFn, text: str) -> str:
    """``text`` with a run of characters cut, or one of ``()[]" `` inserted."""
    if not text or draw(st.booleans()):
        return text
    at = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return text[:at] + text[at + draw(st.integers(1, 4)):]
    return text[:at] + draw(st.sampled_from(list('()[]" \\'))) + text[at:]


@given(data=st.data())
async def test_a_generated_filter_is_never_a_server_error(client: httpx.AsyncClient, services: Services,
                                                          stored_examples: None, data: Any) -> None:
    """``_filter`` (search_filter.html): valid, wrong and damaged filters alike answer a searchset or a 4xx."""
    resource_type = data.draw(st.sampled_from(FUZZED_TYPES), label="type")
    parameters = dict(services.search_parameters.for_type(resource_type))
    text = data.draw(_filter(parameters).flatmap(_damaged), label="_filter")
    headers = {"Prefer": data.draw(st.sampled_from(["handling=lenient", "handling=strict"]), label="Prefer")}
    response = await client.get(f"/fhir/{resource_type}", params={"_filter": text}, headers=headers)
    assert_not_server_error(response)
    if response.status_code == 200:
        bundle = fhirjson.loads(response.content)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", response.text[:500]
    else:
        outcome_of(response)
