"""The ``_filter`` grammar (https://hl7.org/fhir/R4/search_filter.html): the spec's examples read into trees, the
left-to-right logic, and the limits."""

from __future__ import annotations

import pytest

from fhir_server.errors import InvalidRequest
from fhir_server.search.filter_syntax import (
    MAX_DEPTH,
    MAX_LENGTH,
    Comparison,
    Logical,
    Negation,
    PathStep,
    parse_filter,
)


def leaf(path: str, operator: str, value: str, quoted: bool = False) -> Comparison:
    return Comparison(tuple(PathStep(name) for name in path.split(".")), operator, value, quoted)


@pytest.mark.parametrize(("text", "tree"), [
    ('name co "pet"', leaf("name", "co", "pet", quoted=True)),
    ('given eq "peter" and birthdate ge 2014-10-10',
     Logical("and", (leaf("given", "eq", "peter", True), leaf("birthdate", "ge", "2014-10-10")))),
    ("code eq http://loinc.org|1234-5", leaf("code", "eq", "http://loinc.org|1234-5")),
    ('subject.name co "pet"', leaf("subject.name", "co", "pet", True)),
    ("a eq 1 and b eq 2 and c eq 3",
     Logical("and", (leaf("a", "eq", "1"), leaf("b", "eq", "2"), leaf("c", "eq", "3")))),
    # no precedence: left to right
    ("a eq 1 and b eq 2 or c eq 3",
     Logical("or", (Logical("and", (leaf("a", "eq", "1"), leaf("b", "eq", "2"))), leaf("c", "eq", "3")))),
    ("a eq 1 or b eq 2 and c eq 3",
     Logical("and", (Logical("or", (leaf("a", "eq", "1"), leaf("b", "eq", "2"))), leaf("c", "eq", "3")))),
    ("a eq 1 and (b eq 2 or c eq 3)",
     Logical("and", (leaf("a", "eq", "1"), Logical("or", (leaf("b", "eq", "2"), leaf("c", "eq", "3")))))),
    # a group is not extended by the same operator after it
    ("(a eq 1 and b eq 2) and c eq 3",
     Logical("and", (Logical("and", (leaf("a", "eq", "1"), leaf("b", "eq", "2"))), leaf("c", "eq", "3")))),
    ("not(a eq 1) OR NOT (b pr true)",
     Logical("or", (Negation(leaf("a", "eq", "1")), Negation(leaf("b", "pr", "true"))))),
    ('a EQ "x \\"y\\" \\u00e9"', leaf("a", "eq", 'x "y" é', True)),
    ("a eq x(y", leaf("a", "eq", "x(y")),  # a token may hold "(", not ")"
])
def test_filters_read_into_trees(text: str, tree: object) -> None:
    assert parse_filter(text) == tree


def test_a_filtered_path_keeps_its_filter() -> None:
    found = parse_filter("related[type eq has-component].target re Observation/4")
    assert isinstance(found, Comparison)
    assert found.path == (PathStep("related", leaf("type", "eq", "has-component")), PathStep("target"))


@pytest.mark.parametrize("text", [
    "", "a", "a eq", "a eq ", "aeq 1", "a xx 1", "a eq 1 and", "a eq 1 b eq 2", "(a eq 1", "a eq 1)",
    '"a" eq 1', 'a eq "open', "a[b eq 1] eq 2", "not a eq 1", "1a eq 2", 'a eq "\\q"', 'a eq "\\ud800"',
    "(" * (MAX_DEPTH + 1) + "a eq 1" + ")" * (MAX_DEPTH + 1), "a eq " + "x" * MAX_LENGTH,
])
def test_malformed_filters_are_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_filter(text)
    assert raised.value.issues[0].code == "invalid"
