"""SMART scopes as the token endpoint and every request read them
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): v2 letters in the order c r u d s,
v1 read / write / *, and what a role allows."""

from __future__ import annotations

import pytest

from fhir_server.permissions import Role
from fhir_server.security.roles import role_allows
from fhir_server.security.scopes import Scope, ScopeError, allows, narrowed, parse_scope


@pytest.mark.parametrize(("text", "letters"), [
    ("system/Observation.rs", "rs"), ("system/*.cruds", "cruds"), ("system/Patient.c", "c"),
    ("system/*.read", "rs"), ("system/*.write", "cud"), ("system/*.*", "cruds"), ("user/Patient.r", "r"),
])
def test_v2_and_v1_scopes_are_understood(text: str, letters: str) -> None:
    assert parse_scope(text).permissions == frozenset(letters)


@pytest.mark.parametrize("text", ["system/Observation.sr", "system/*.rr", "system/*.x", "system/observation.rs",
                                  "system/*", "Observation.rs", "launch/patient", "system/*.rs?category=x"])
def test_anything_else_is_not_a_scope(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_a_request_is_allowed_by_a_scope_of_its_type_or_of_every_type() -> None:
    assert allows({"system/Observation.rs"}, "Observation", "s")
    assert not allows({"system/Observation.rs"}, "Patient", "r")
    assert not allows({"system/Observation.rs"}, "Observation", "c")
    assert allows({"openid", "system/*.write"}, "Patient", "d")
    assert not allows({"patient/*.rs"}, "Patient", "r")  # no patient context in backend services


def test_narrowing_keeps_what_both_allow() -> None:
    [scope] = narrowed([parse_scope("system/*.cruds")], [parse_scope("system/Observation.rs")])
    assert scope == Scope("system", "Observation", frozenset("rs"))
    assert narrowed([parse_scope("system/Patient.c")], [parse_scope("system/*.rs")]) == []


@pytest.mark.parametrize(("role", "resource_type", "letter", "allowed"), [
    (Role.EHR, "Observation", "c", True), (Role.EHR, "ValueSet", "r", True), (Role.EHR, "ValueSet", "u", False),
    (Role.RESEARCHER, "Patient", "s", True), (Role.RESEARCHER, "Patient", "u", False),
    (Role.MAINTAINER, "CodeSystem", "d", True), (Role.MAINTAINER, "Patient", "r", False),
    (Role.ADMIN, "Group", "d", True), (Role.ADMIN, "SearchParameter", "c", True),
])
def test_what_each_role_may_do(role: Role, resource_type: str, letter: str, allowed: bool) -> None:
    assert role_allows(role, resource_type, letter) is allowed
