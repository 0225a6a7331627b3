"""Which center a stored resource belongs to (issue #11 item 6; README, "Centers").

Every stored document, current and history, carries ``center`` beside ``sp``: decided here when the version is
stored, never read from the body (a client cannot claim a center). The values:

* a center code (``FR-POI``): the value of an identifier of system ``{base}/sid/center`` (``CENTER_SYSTEM``);
* ``None`` (**shared**): conformance resources, and clinical resources that reach no patient and name no
  center (an Organization without a center identifier, such as a laboratory; an Observation without subject;
  an empty Group). Every caller allowed the type reads them;
* ``UNASSIGNED`` (``"*"``): a resource of no single center (a Patient whose ``managingOrganization`` names no
  center, a Group of several centers' patients, anything whose patient is unassigned). Only the roles that
  read every center see it: a patient's data is never shared with every center by default.

Rule table (the README repeats it):

=================  ==============================================================================================
written by         stored center
=================  ==============================================================================================
``ehr``            the caller's center, always. Refused (403): a reference to a stored clinical resource of
                   another center (a Patient, an Organization...) or of no single center; an Organization
                   carrying another center's identifier; changing a shared resource; a conformance resource.
                   A PUT to an id of another center answers 404, as a read of it would.
admin, system,     derived from the content: an Organization -> its center identifier (else shared); a Patient ->
``import-csv``     the center of its ``managingOrganization`` (else unassigned); anything else -> the center of
                   the Patients it references (none -> shared; several, an unassigned one, a contained one or
                   one on another server -> unassigned).
                   References are resolved among the resources stored in the same flush first (a transaction
                   Bundle's ``urn:uuid`` entries, rewritten to ``Type/id`` before storage), then the store.
researcher         nothing (403); maintainer: conformance resources only (403 for clinical ones).
any                a delete's tombstone keeps the center of the version it ends; conformance types: shared.
=================  ==============================================================================================

The 403 for a reference to another center's resource tells the client that the id exists elsewhere: the issue
asks for the refusal, and ids are random UUIDs a client does not guess. Every read of it stays a 404.

An admin moving a Patient to another center changes the Patient's center only; its other resources keep theirs
until they are written again. Documents stored before centers existed get theirs at start-up
(``ResourceStore.assign_missing_centers``), with the admin rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fhir_server.contract import CENTER_SYSTEM
from fhir_server.errors import Forbidden, NotFound
from fhir_server.json_types import reference_strings
from fhir_server.permissions import CONFORMANCE_TYPES, Role

UNASSIGNED = "*"  # of no single center: read only by the roles that read every center
ROLES_OF_ONE_CENTER = frozenset({Role.EHR})
Key = tuple[str, str]  # (resource type, id)

_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@dataclass(frozen=True)
class Version:
    """What the rules need of a version being stored: which resource, its content (None: a tombstone), and
    whether it is new to the store (``created``) and was sent as a PUT with the client's id."""

    type: str
    id: str
    resource: dict[str, Any] | None
    created: bool
    client_id: bool = False

    @property
    def key(self) -> Key:
        return self.type, self.id

    @cached_property
    def reference_strings(self) -> list[str]:
        """Every ``Reference.reference`` of the content: walked once, the rules read it up to three times."""
        return reference_strings(self.resource) if self.resource is not None else []

    @cached_property
    def references(self) -> set[Key]:
        """:func:`references` of the content."""
        return _relative_keys(self.reference_strings)


def center_identifiers(resource: Mapping[str, Any]) -> list[str]:
    """The center codes of the resource's identifiers of system ``CENTER_SYSTEM``."""
    return [str(i["value"]) for i in resource.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == CENTER_SYSTEM and isinstance(i.get("value"), str)]


def references(node: Any) -> set[Key]:
    """Every relative literal reference (``Type/id``, also version-specific) in ``node``, contained resources
    included; absolute URLs (another server's), ``#id`` and conditional references name no stored resource
    (a transaction has rewritten its own to ``Type/id`` before storage)."""
    return _relative_keys(reference_strings(node))


def _relative_keys(strings: Iterable[str]) -> set[Key]:
    return {(match.group(1), match.group(2)) for match in map(_RELATIVE.match, strings) if match}


def names_unstored_patient(resource: Mapping[str, Any], reference_strings: Iterable[str]) -> bool:
    """Whether ``resource`` (whose references are ``reference_strings``) is about a patient who is not a stored
    Patient: a contained one, or one on another server (``http://.../Patient/1``). Such a resource has no center
    to inherit, and is not shared either."""
    contained = any(isinstance(r, dict) and r.get("resourceType") == "Patient" for r in resource.get("contained") or [])
    return contained or any("Patient/" in ref and not _RELATIVE.match(ref) for ref in reference_strings)


def needed_keys(versions: Sequence[Version]) -> set[Key]:
    """The stored resources whose center the rules may read: each version's own (updates, deletes, PUTs with a
    client id) and everything the versions reference that is not among them."""
    own = {v.key for v in versions}
    keys = {v.key for v in versions if not v.created or v.client_id}
    for version in versions:
        keys |= {k for k in version.references if k not in own}
    return keys


def assign(role: Role, center: str | None, versions: Sequence[Version],
           stored: Mapping[Key, str | None]) -> list[str | None]:
    """The center of each version, in order (see the module's rule table); ``stored``: the center of each stored
    resource of :func:`needed_keys` (absent: not stored). Raises Forbidden (403) or NotFound (404)."""
    if role in ROLES_OF_ONE_CENTER:
        return [_own_center(center, version, stored) for version in versions]
    for version in versions:
        _check_role_data(role, version)
    return _Derivation(versions, stored).centers()


def _check_role_data(role: Role, version: Version) -> None:
    """The data a role may not touch at all, whatever the request (``interactions/authorization.py`` refuses the
    interaction first; this holds on every write path, e.g. an operation that stores a resource)."""
    if role == Role.RESEARCHER:
        raise Forbidden("A researcher reads every center's data and changes none")
    if role == Role.MAINTAINER and version.type not in CONFORMANCE_TYPES:
        raise Forbidden(f"A maintainer changes conformance resources only, not {version.type}")


def _own_center(center: str | None, version: Version, stored: Mapping[Key, str | None]) -> str:
    name = f"{version.type}/{version.id}"
    if center is None or center == UNASSIGNED:
        raise Forbidden("This client belongs to no center and may not write clinical data")
    if version.type in CONFORMANCE_TYPES:
        raise Forbidden(f"{version.type} resources belong to no center: a center's client may not write them")
    if version.key in stored:
        previous = stored[version.key]
        if version.created or (previous is not None and previous != center):
            raise NotFound(f"{name} is not known")  # another center's: its existence must not show
        if previous is None:
            raise Forbidden(f"{name} is shared by every center: a center's client may not change it")
    if version.resource is None:
        return center
    foreign = [c for c in center_identifiers(version.resource) if c != center]
    if version.type == "Organization" and foreign:
        raise Forbidden(f"An Organization of center {center} cannot carry the identifier of center {foreign[0]}",
                        expression=("Organization.identifier",))
    for kind, ident in sorted(version.references):
        target = stored.get((kind, ident), center)
        if target is not None and target != center:
            raise Forbidden(f"{name} refers to {kind}/{ident}, which belongs to another center")
    return center


class _Derivation:
    """The admin rules: each version's center from its content, resolving references within the versions
    first (memoised; a cycle is unassigned), then from ``stored``."""

    def __init__(self, versions: Sequence[Version], stored: Mapping[Key, str | None]) -> None:
        self._versions = {v.key: v for v in versions}
        self._order = list(versions)
        self._stored = stored
        self._done: dict[Key, str | None] = {}
        self._busy: set[Key] = set()

    def centers(self) -> list[str | None]:
        return [self._of_version(v) for v in self._order]

    def _of(self, key: Key) -> str | None:
        version = self._versions.get(key)
        if version is not None:
            return self._of_version(version)
        return self._stored.get(key, UNASSIGNED)  # a dangling reference reaches no known center

    def _of_version(self, version: Version) -> str | None:
        if version.key in self._done:
            return self._done[version.key]
        if version.key in self._busy:
            return UNASSIGNED
        self._busy.add(version.key)
        center = self._derive(version)
        self._busy.discard(version.key)
        self._done[version.key] = center
        return center

    def _derive(self, version: Version) -> str | None:
        resource = version.resource
        if version.type in CONFORMANCE_TYPES:
            return None
        if resource is None:  # a tombstone keeps the center of the version it ends
            return self._stored.get(version.key, UNASSIGNED)
        if version.type == "Organization":
            codes = center_identifiers(resource)
            return codes[0] if codes else None
        if version.type == "Patient":
            organization = references(resource.get("managingOrganization"))
            center = self._of(next(iter(organization))) if organization else None
            return center if center is not None else UNASSIGNED
        centers = {self._of(key) for key in version.references if key[0] == "Patient"}
        if names_unstored_patient(resource, version.reference_strings):
            centers.add(UNASSIGNED)
        return _single(centers)


def _single(centers: Iterable[str | None]) -> str | None:
    found = set(centers)
    if not found:
        return None
    return found.pop() if len(found) == 1 and None not in found else UNASSIGNED
