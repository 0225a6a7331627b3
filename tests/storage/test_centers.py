"""The center rules of ``storage/centers.py`` as plain functions: which center a version is stored with, and
which writes are refused (issue #11 item 6). The HTTP side is ``tests/security``."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.contract import CENTER_SYSTEM
from fhir_server.errors import Forbidden, NotFound
from fhir_server.permissions import Role
from fhir_server.storage.centers import UNASSIGNED, Version, assign, needed_keys, references


def organization(ident: str, center: str | None = None) -> Version:
    resource: dict[str, Any] = {"resourceType": "Organization"}
    if center:
        resource["identifier"] = [{"system": "urn:other", "value": "x"}, {"system": CENTER_SYSTEM, "value": center}]
    return Version("Organization", ident, resource, created=True)


def patient(ident: str, organization_id: str | None = None) -> Version:
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if organization_id:
        resource["managingOrganization"] = {"reference": f"Organization/{organization_id}"}
    return Version("Patient", ident, resource, created=True)


def observation(ident: str, *patients: str) -> Version:
    resource: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    if patients:
        resource["subject"] = {"reference": f"Patient/{patients[0]}"}
        resource["focus"] = [{"reference": f"Patient/{p}/_history/1"} for p in patients[1:]]
    return Version("Observation", ident, resource, created=True)


def admin(*versions: Version, stored: dict[tuple[str, str], str | None] | None = None) -> list[str | None]:
    return assign(Role.ADMIN, None, versions, stored or {})


def ehr(*versions: Version, stored: dict[tuple[str, str], str | None] | None = None,
        center: str | None = "FR-POI") -> list[str | None]:
    return assign(Role.EHR, center, versions, stored or {})


def test_an_organization_is_of_the_center_its_identifier_names_else_shared() -> None:
    assert admin(organization("o1", "FR-POI"), organization("lab")) == ["FR-POI", None]


def test_a_patient_is_of_its_managing_organizations_center_resolved_in_the_same_write_first() -> None:
    assert admin(patient("p1", "o1"), organization("o1", "DE-HD")) == ["DE-HD", "DE-HD"]
    assert admin(patient("p2", "o9"), stored={("Organization", "o9"): "FR-POI"}) == ["FR-POI"]


def test_a_patient_without_a_center_is_unassigned_never_shared() -> None:
    assert admin(patient("p1")) == [UNASSIGNED]
    assert admin(patient("p2", "lab"), organization("lab")) == [UNASSIGNED, None]
    assert admin(patient("p3", "gone")) == [UNASSIGNED]  # a dangling reference names no center


def test_anything_else_is_of_its_patients_center() -> None:
    stored = {("Patient", "p1"): "FR-POI", ("Patient", "p2"): "DE-HD"}
    assert admin(observation("a", "p1"), stored=stored) == ["FR-POI"]
    assert admin(observation("b", "p1", "p1"), stored=stored) == ["FR-POI"]
    assert admin(observation("c", "p1", "p2"), stored=stored) == [UNASSIGNED]  # several centers
    assert admin(observation("d")) == [None]  # no patient: shared
    assert admin(observation("e", "p3"), patient("p3", "o1"), organization("o1", "IT-MI")) == ["IT-MI"] * 3


def test_a_resource_about_a_patient_who_is_not_stored_here_is_unassigned_not_shared() -> None:
    contained = {"resourceType": "Observation", "contained": [{"resourceType": "Patient", "id": "p"}],
                 "subject": {"reference": "#p"}}
    elsewhere = {"resourceType": "Observation", "subject": {"reference": "https://other.example/fhir/Patient/1"}}
    assert admin(Version("Observation", "a", contained, created=True),
                 Version("Observation", "b", elsewhere, created=True)) == [UNASSIGNED, UNASSIGNED]


def test_a_reference_cycle_within_one_write_is_unassigned() -> None:
    a = Version("Patient", "a", {"resourceType": "Patient", "managingOrganization": {"reference": "Patient/a"}},
                created=True)
    assert admin(a) == [UNASSIGNED]


def test_conformance_resources_belong_to_no_center() -> None:
    assert admin(Version("CodeSystem", "cs", {"resourceType": "CodeSystem"}, created=True)) == [None]


def test_a_tombstone_keeps_the_center_of_the_version_it_ends() -> None:
    tombstone = Version("Observation", "x", None, created=False)
    assert admin(tombstone, stored={("Observation", "x"): "FR-POI"}) == ["FR-POI"]
    assert ehr(tombstone, stored={("Observation", "x"): "FR-POI"}) == ["FR-POI"]


def test_an_ehr_writes_in_its_own_center_whatever_the_content_says() -> None:
    assert ehr(organization("mine"), patient("p1", "lab"), observation("o", "p1"),
               stored={("Organization", "lab"): None}) == ["FR-POI"] * 3  # a shared organization may be named
    assert ehr(organization("own", "FR-POI")) == ["FR-POI"]


@pytest.mark.parametrize("stored_center", ["DE-HD", UNASSIGNED])
def test_an_ehr_may_not_refer_to_another_centers_resource(stored_center: str) -> None:
    with pytest.raises(Forbidden):
        ehr(observation("o", "p1"), stored={("Patient", "p1"): stored_center})
    with pytest.raises(Forbidden):
        ehr(patient("p2", "org"), stored={("Organization", "org"): stored_center})


def test_an_ehr_may_not_carry_another_centers_identifier() -> None:
    with pytest.raises(Forbidden):
        ehr(organization("o", "DE-HD"))


def test_an_ehr_may_not_change_shared_or_conformance_resources_nor_write_without_a_center() -> None:
    with pytest.raises(Forbidden):
        ehr(Version("Organization", "lab", {"resourceType": "Organization"}, created=False),
            stored={("Organization", "lab"): None})
    with pytest.raises(Forbidden):
        ehr(Version("ValueSet", "vs", {"resourceType": "ValueSet"}, created=True))
    with pytest.raises(Forbidden):
        ehr(patient("p"), center=None)


def test_an_ehr_put_to_another_centers_id_is_not_found() -> None:
    version = Version("Patient", "p1", {"resourceType": "Patient"}, created=True, client_id=True)
    with pytest.raises(NotFound):
        ehr(version, stored={("Patient", "p1"): "DE-HD"})


def test_researchers_write_nothing_and_maintainers_only_conformance_resources() -> None:
    with pytest.raises(Forbidden):
        assign(Role.RESEARCHER, None, [organization("o")], {})
    with pytest.raises(Forbidden):
        assign(Role.MAINTAINER, None, [organization("o")], {})
    assert assign(Role.MAINTAINER, None, [Version("ValueSet", "v", {}, created=True)], {}) == [None]


def test_the_rules_read_only_the_stored_resources_they_need() -> None:
    versions = [patient("p1", "o1"), organization("o1"), observation("x", "p9"),
                Version("Patient", "p5", {}, created=False), Version("Patient", "p6", {}, created=True, client_id=True)]
    assert needed_keys(versions) == {("Patient", "p9"), ("Patient", "p5"), ("Patient", "p6")}


def test_references_are_the_relative_literal_ones_contained_resources_included() -> None:
    resource = {"subject": {"reference": "Patient/1"}, "focus": [{"reference": "http://x/fhir/Patient/2"},
                                                                 {"reference": "#c"}, {"reference": "Patient?x=1"}],
                "contained": [{"resourceType": "Patient", "link": [{"other": {"reference": "Patient/3"}}]}]}
    assert references(resource) == {("Patient", "1"), ("Patient", "3")}
