"""What each role may do (issue #11 item 5; the README's table under "Authentication").

- ``ehr``: reads and writes clinical data (its own center's: the storage access policy narrows it), reads the
  conformance resources;
- ``researcher``: reads and searches everything, exports, reads the registry report; writes nothing;
- ``maintainer``: reads and writes the conformance resources, starts ``$reindex``; no clinical data;
- ``admin`` (and the server's own ``system`` work): everything, and reads the audit trail (AuditEvent), which no
  other role reads and nobody writes over the API.

A role is a ceiling on the permission letters (c r u d s, as in SMART scopes) per resource type; the scopes a
token carries narrow it further. The scopes a role may be granted at the token endpoint follow from it.
"""

from __future__ import annotations

from fhir_server.permissions import Role
from fhir_server.resources import AUDIT_EVENT, CLINICAL_TYPES, CONFORMANCE_TYPES
from fhir_server.security.scopes import PERMISSIONS, Scope

ALL = frozenset(PERMISSIONS)
READ = frozenset("rs")
NONE: frozenset[str] = frozenset()
ROLES = (Role.EHR, Role.RESEARCHER, Role.MAINTAINER, Role.ADMIN)  # the roles a client or user may have

_CEILINGS: dict[Role, tuple[frozenset[str], frozenset[str]]] = {  # (clinical types, conformance types)
    Role.EHR: (ALL, READ),
    Role.RESEARCHER: (READ, READ),
    Role.MAINTAINER: (NONE, ALL),
    Role.ADMIN: (ALL, ALL),
    Role.SYSTEM: (ALL, ALL),
}


def role_allows(role: Role, resource_type: str, permission: str) -> bool:
    if resource_type == AUDIT_EVENT:  # the audit trail: read and searched by admins only (README, "Audit trail")
        return role in (Role.ADMIN, Role.SYSTEM) and permission in READ
    clinical, conformance = _CEILINGS[role]
    if resource_type in CONFORMANCE_TYPES:
        return permission in conformance
    return resource_type in CLINICAL_TYPES and permission in clinical


def role_caps(role: Role) -> list[Scope]:
    """The widest scopes a client of ``role`` may be granted."""
    clinical, conformance = _CEILINGS[role]
    if clinical == conformance:
        return [Scope("system", "*", clinical)] if clinical else []
    return [Scope("system", t, p) for types, p in ((CLINICAL_TYPES, clinical), (CONFORMANCE_TYPES, conformance))
            if p for t in types]
