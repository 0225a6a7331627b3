"""SMART scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): the v2 form
``system/Observation.rs``, ``system/*.cruds`` and the v1 form ``system/*.read``, ``system/Patient.write``,
``system/*.*``. A scope is kept as (context, resource type or ``*``, the set of its permission letters):
c create, r read/vread, u update/patch, d delete, s search/history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

PERMISSIONS = "cruds"
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(PERMISSIONS)}
# context/type.permissions; granular v2 scopes (``?category=...``) are not supported and so not understood
_SCOPE = re.compile(r"(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)")


class ScopeError(ValueError):
    """A scope string that is not a SMART resource scope this server understands."""


@dataclass(frozen=True, order=True)
class Scope:
    context: str  # system | user | patient
    resource_type: str  # a type, or * for every type
    permissions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.context}/{self.resource_type}.{''.join(p for p in PERMISSIONS if p in self.permissions)}"

    def allows(self, resource_type: str, permission: str) -> bool:
        return permission in self.permissions and self.resource_type in ("*", resource_type)

    def within(self, cap: Scope) -> Scope | None:
        """What of this scope ``cap`` allows (None: nothing)."""
        if cap.resource_type not in ("*", self.resource_type) and self.resource_type != "*":
            return None
        permissions = self.permissions & cap.permissions
        if not permissions:
            return None
        resource_type = self.resource_type if cap.resource_type == "*" else cap.resource_type
        return Scope(self.context, resource_type, permissions)


@lru_cache(maxsize=4096)  # every request checks its token's scopes: parse each distinct one once
def parse_scope(text: str) -> Scope:
    match = _SCOPE.fullmatch(text)
    if match is None:
        raise ScopeError(f"'{text}' is not a SMART resource scope (e.g. system/Observation.rs, system/*.read)")
    context, resource_type, permissions = match.groups()
    if permissions in _V1:
        return Scope(context, resource_type, _V1[permissions])
    if not _is_v2(permissions):
        raise ScopeError(f"'{text}': permissions are letters of c r u d s in that order, or read, write, *")
    return Scope(context, resource_type, frozenset(permissions))


def _is_v2(permissions: str) -> bool:
    """Letters of ``cruds``, each at most once and in that order."""
    positions = [PERMISSIONS.find(p) for p in permissions]
    return bool(positions) and -1 not in positions and positions == sorted(set(positions))


def parse_scopes(text: str) -> list[Scope]:
    """A space-separated scope list; raises ``ScopeError`` on the first scope not understood."""
    return [parse_scope(part) for part in text.split()]


def understood(texts: Iterable[str]) -> list[Scope]:
    """The resource scopes among ``texts`` (an access token may carry others: openid, profile...)."""
    out = []
    for text in texts:
        try:
            out.append(parse_scope(text))
        except ScopeError:
            continue
    return out


def narrowed(requested: Iterable[Scope], caps: Iterable[Scope]) -> list[Scope]:
    """What of ``requested`` ``caps`` allow, every scope of the answer within one cap."""
    out: set[Scope] = set()
    caps = list(caps)
    for scope in requested:
        out.update(s for s in (scope.within(cap) for cap in caps) if s is not None)
    return sorted(out)


def allows(scopes: Iterable[str], resource_type: str, permission: str) -> bool:
    """Whether one of ``scopes`` (as a token carries them) allows ``permission`` on ``resource_type``."""
    return any(s.context != "patient" and s.allows(resource_type, permission) for s in understood(scopes))


def scope_text(scopes: Iterable[Scope]) -> str:
    return " ".join(str(s) for s in scopes)
