"""Two centers' data, stored the way an admin import stores it, and the callers of the isolation tests.

One transaction Bundle (``urn:uuid`` references, ids chosen by ``PUT`` so that their order is known) creates,
per center, its Organization (center identifier), a Patient managed by it, Observations of that patient and a
Group; beside them a shared laboratory Organization (no center identifier) and a Group of both centers' patients
(no single center). Every resource carries an identifier of this module's own system, so searches see only this
data, and a tag of that system whose code is its name (what ``$meta`` reports). Center codes are drawn per
module: the session's other tests use the usual ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from fhir_server.contract import CENTER_SYSTEM
from fhir_server.permissions import Caller, Role
from tests.conftest import body, parse

# name -> (type, center key: "FR", "DE", "shared", "both")
SEED: dict[str, tuple[str, str]] = {
    "orgFR": ("Organization", "FR"), "orgDE": ("Organization", "DE"), "lab": ("Organization", "shared"),
    "pFR": ("Patient", "FR"), "pDE": ("Patient", "DE"),
    "oFR-a": ("Observation", "FR"), "oFR-b": ("Observation", "FR"), "oDE": ("Observation", "DE"),
    "gFR": ("Group", "FR"), "gBoth": ("Group", "both"),
}
FR = frozenset(n for n, (_, c) in SEED.items() if c == "FR")
DE = frozenset(n for n, (_, c) in SEED.items() if c == "DE")
SHARED = frozenset({"lab"})
ALL = frozenset(SEED)


@dataclass
class World:
    marker: str
    fr: str  # center codes
    de: str
    start: datetime  # before the seed was stored (``_since`` of history and export)
    ids: dict[str, str] = field(default_factory=dict)  # name -> id
    names: dict[str, str] = field(default_factory=dict)  # "Type/id" -> name
    extra: dict[str, Any] = field(default_factory=dict)  # artefacts of one caller (a page link, a job)

    @property
    def system(self) -> str:
        """The identifier system of this module's resources."""
        return f"urn:test:{self.marker}"

    @property
    def fresh_system(self) -> str:
        """The identifier system of what the write tests create (never found by the read tests' searches)."""
        return f"urn:test:fresh:{self.marker}"

    def ident(self, name: str) -> str:
        return f"{name}-{self.marker}"

    def name_of(self, resource_type: str, resource_id: str) -> str | None:
        return self.names.get(f"{resource_type}/{resource_id}")

    def visible(self, resources: list[dict[str, Any]]) -> frozenset[str]:
        """The seed names among ``resources`` (anything else: another test's data, ignored)."""
        found = (self.name_of(r.get("resourceType", ""), r.get("id", "")) for r in resources)
        return frozenset(n for n in found if n is not None)

    def caller(self, role: Role, center: str | None = None, name: str = "") -> Caller:
        return Caller(id=name or f"{role.value}-{center or 'all'}", role=role, center=center)


def new_world() -> World:
    marker = uuid.uuid4().hex[:8].upper()
    return World(marker=marker, fr=f"FR-{marker}", de=f"DE-{marker}", start=datetime.now(UTC))


def seed_bundle(world: World) -> dict[str, Any]:
    def entry(name: str, resource: dict[str, Any]) -> dict[str, Any]:
        kind = SEED[name][0]
        ident = world.ident(name)
        resource = {"resourceType": kind, "id": ident, "meta": {"tag": [{"system": world.system, "code": name}]},
                    **resource}
        resource.setdefault("identifier", []).append({"system": world.system, "value": ident})
        return {"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, ident)}", "resource": resource,
                "request": {"method": "PUT", "url": f"{kind}/{ident}"}}

    def ref(name: str) -> dict[str, str]:
        return {"reference": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, world.ident(name))}"}

    def observation(patient: str) -> dict[str, Any]:
        return {"status": "final", "code": {"text": world.marker}, "subject": ref(patient)}

    def group(*members: str) -> dict[str, Any]:
        return {"type": "person", "actual": True, "member": [{"entity": ref(m)} for m in members]}

    entries = [
        entry("orgFR", {"identifier": [{"system": CENTER_SYSTEM, "value": world.fr}], "name": "FR"}),
        entry("orgDE", {"identifier": [{"system": CENTER_SYSTEM, "value": world.de}], "name": "DE"}),
        entry("lab", {"name": "A laboratory of no center"}),
        entry("pFR", {"gender": "female", "managingOrganization": ref("orgFR")}),
        entry("pDE", {"gender": "male", "managingOrganization": ref("orgDE")}),
        entry("oFR-a", observation("pFR")), entry("oFR-b", observation("pFR")), entry("oDE", observation("pDE")),
        entry("gFR", group("pFR")), entry("gBoth", group("pFR", "pDE")),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def store_seed(client: httpx.AsyncClient, world: World) -> None:
    """Store the seed as the system (admin) caller: each resource's center derived from its content."""
    response = await client.post("/fhir", content=body(seed_bundle(world)),
                                 headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    for name, (kind, _) in SEED.items():
        world.ids[name] = world.ident(name)
        world.names[f"{kind}/{world.ident(name)}"] = name
    assert all(e["response"]["status"].startswith("201") for e in parse(response)["entry"])
