"""The golden table of issue #11 (item 13): every read and write path of item 7, for every kind of caller ->
the expected status and exactly which of the seed's resources it sees (``tests/security/world.py``).

Rows are paths; columns are callers (``COLUMNS``): the own-center ``ehr`` client (center FR), the other
center's ``ehr`` client (DE), a researcher, a maintainer, a caller without a token and one with an expired
token. A column is a name and a way to open an HTTP client as that caller: the four identities are given to the
app (``client_as``: the rules under test are the server's), the last two call the server that takes tokens
(401 on every path: one expectation for every row, ``EVERY_ROW``). Each cell is one test, so a failure names
its path and its caller. The tenant leaks of other servers came from a read path that skipped the filter (HAPI
#6065, #2012, #3394, #5275; Microsoft PR #5683): here every path is asked of every caller.

What the table pins down (``storage/access.py``, ``storage/centers.py``, ``interactions/authorization.py``):
another center's resource is 404 on every instance path (never 403), invisible to every search, count,
include, chain, ``_has``, history, export and report; shared resources (``lab``) are read by every ``ehr``; a
resource of no single center (``gBoth``) only by the researcher; a maintainer is refused clinical data (403
by its role; the page ``/report``, which has no role rule, shows it nothing: the storage filter). Writes: an
``ehr`` writes in its own center only (403 for references to another center's data, 404 for another center's
id); researchers write nothing and maintainers no clinical data (403).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from joserfc import jwt
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.bulk import runner
from fhir_server.contract import CENTER_SYSTEM
from fhir_server.permissions import Caller, Role
from fhir_server.services import Services
from tests.conftest import FHIR_JSON, body, client_as, parse
from tests.security.tokens import BASE, app_client, bearer_client
from tests.security.world import ALL, DE, FR, SHARED, World, new_world, store_seed

# -- the columns -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    """The two app configurations the columns use, on one database: ``plain`` takes the caller a test gives
    (``client_as``: the rules under test are the server's, the identity is given), ``smart`` takes tokens."""

    plain: Services
    smart: Services


@dataclass(frozen=True)
class Column:
    """A kind of caller: ``open`` gives an HTTP client whose requests are that caller's."""

    name: str
    open: Callable[[Servers, World], Awaitable[httpx.AsyncClient]]


def _as(role: Role, center: str | None = None) -> Callable[[Servers, World], Awaitable[httpx.AsyncClient]]:
    async def open_client(servers: Servers, world: World) -> httpx.AsyncClient:
        code = {"FR": world.fr, "DE": world.de}.get(center or "")
        return client_as(servers.plain, Caller(id=f"{role.value}-{center or 'all'}-{world.marker}", role=role,
                                               center=code))
    return open_client


async def _without_token(servers: Servers, _world: World) -> httpx.AsyncClient:
    return app_client(servers.smart)


async def _with_expired_token(servers: Servers, _world: World) -> httpx.AsyncClient:
    """A token this server signed for an admin, expired a minute ago."""
    key = await servers.smart.authority.keys.current()  # type: ignore[union-attr]
    now = int(time.time())
    claims = {"iss": BASE, "aud": BASE, "sub": "admin-1", "role": "admin", "scope": "system/*.cruds",
              "iat": now - 360, "exp": now - 60, "jti": uuid.uuid4().hex}
    return bearer_client(servers.smart, jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key,
                                                   algorithms=["ES384"]))


OWN, OTHER, RESEARCHER, MAINTAINER = "own-center ehr", "other-center ehr", "researcher", "maintainer"
NO_TOKEN, EXPIRED_TOKEN = "no token", "expired token"
COLUMNS = [
    Column(OWN, _as(Role.EHR, "FR")),
    Column(OTHER, _as(Role.EHR, "DE")),
    Column(RESEARCHER, _as(Role.RESEARCHER)),
    Column(MAINTAINER, _as(Role.MAINTAINER)),
    Column(NO_TOKEN, _without_token),
    Column(EXPIRED_TOKEN, _with_expired_token),
]


# -- the cells ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What a request gave: its status and the seed's names it showed (or another observable, e.g. a total). As an
    expectation, ``ids`` None checks the status alone (a path that shows nothing, or a column such as "no
    token" whose every answer is the same refusal)."""

    status: int
    ids: frozenset[str] | None = None

    def shown_as(self, expected: Seen) -> Seen:
        """This observation as ``expected`` compares it."""
        return self if expected.ids is not None else Seen(self.status)


def seen(status: int, *ids: str | frozenset[str]) -> Seen:
    names: set[str] = set()
    for item in ids:
        names |= {item} if isinstance(item, str) else set(item)
    return Seen(status, frozenset(names))


Probe = Callable[[httpx.AsyncClient, World, "Cell"], Awaitable[Seen]]


@dataclass(frozen=True)
class Row:
    path: str
    probe: Probe
    expected: dict[str, Seen]  # column name -> what it must see

    def expectation(self, column: str) -> Seen:
        return self.expected[column] if column in self.expected else EVERY_ROW[column]


# Columns whose expectation is the same for every row: a caller without a valid token learns nothing anywhere.
EVERY_ROW: dict[str, Seen] = {NO_TOKEN: Seen(401), EXPIRED_TOKEN: Seen(401)}


@dataclass
class Cell:
    """What a probe may use besides its client: the system client (to arrange and check) and the database."""

    admin: httpx.AsyncClient
    db: AsyncDatabase


def _entries(bundle: dict[str, Any], world: World) -> frozenset[str]:
    return world.visible([e["resource"] for e in bundle.get("entry", []) if "resource" in e])


def get(url: Callable[[World], str]) -> Probe:
    """GET ``url``: its status and the seed resources of the Bundle (or the resource) it returns."""
    async def probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
        response = await http.get(f"/fhir/{url(world)}")
        if response.status_code != 200:
            return Seen(response.status_code)
        data = parse(response)
        if data.get("resourceType") == "Bundle":
            return Seen(200, _entries(data, world))
        return Seen(200, world.visible([data]))
    return probe


async def _match_probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
    """``Patient/$match`` of a description that shares the FR patient's identifier."""
    described = {"resourceType": "Patient", "identifier": [{"system": world.system, "value": world.ident("pFR")}]}
    response = await http.post("/fhir/Patient/$match", content=body(
        {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": described}]}),
        headers={"Content-Type": FHIR_JSON})
    return Seen(200, _entries(parse(response), world)) if response.status_code == 200 else Seen(response.status_code)


def total(url: Callable[[World], str]) -> Probe:
    async def probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
        response = await http.get(f"/fhir/{url(world)}")
        return seen(response.status_code, f"total={parse(response).get('total')}")
    return probe


def status_only(method: str, url: Callable[[World], str]) -> Probe:
    async def probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
        return Seen((await http.request(method, url(world))).status_code)
    return probe


def q(value: str) -> str:
    return quote(value, safe="")


def idn(name: str) -> Callable[[World], str]:
    """``system|value`` of a seed resource's identifier, URL-encoded."""
    return lambda w: q(f"{w.system}|{w.ident(name)}")


# -- read paths --------------------------------------------------------------------------------------------

NOT_FOUND = Seen(404)
NOTHING = seen(200)
REFUSED = Seen(403)  # by the caller's role (interactions/authorization.py), before anything is read


def same(value: Seen) -> dict[str, Seen]:
    return {c.name: value for c in COLUMNS}


def by(own: Seen, other: Seen, researcher: Seen, maintainer: Seen) -> dict[str, Seen]:
    return {OWN: own, OTHER: other, RESEARCHER: researcher, MAINTAINER: maintainer}


def fr_only(found: Seen) -> dict[str, Seen]:
    """A path about center FR's data: FR and the researcher see it, DE finds nothing, the maintainer (no clinical
    data) is refused."""
    return by(found, NOT_FOUND, found, REFUSED)


async def _export(http: httpx.AsyncClient, world: World, path: str) -> Seen:
    kickoff = await http.get(f"/fhir/{path}", headers={"Prefer": "respond-async"})
    if kickoff.status_code != 202:
        return Seen(kickoff.status_code)
    status_url = kickoff.headers["content-location"].replace("http://testserver", "")
    await runner.wait(status_url.rsplit("=", 1)[1])
    manifest = parse(await http.get(status_url))
    resources: list[dict[str, Any]] = []
    for item in manifest["output"]:
        response = await http.get(item["url"].replace("http://testserver", ""))
        resources += [parse(httpx.Response(200, content=line)) for line in response.content.splitlines() if line]
    return Seen(200, world.visible(resources))


def export(path: Callable[[World], str]) -> Probe:
    async def probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
        return await _export(http, world, path(world))
    return probe


async def _associated_provenance(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
    """The Patients an export writes and the Provenance associated with them (``includeAssociatedData``): of the
    world's two Provenances (``world`` fixture), one targets pFR (center FR), the other pFR and pDE (no single
    center: the researcher's only)."""
    path = (f"$export?_type=Patient&_typeFilter={q('Patient?identifier=' + world.system + '|')}"
            "&includeAssociatedData=RelevantProvenanceResources")
    kickoff = await http.get(f"/fhir/{path}", headers={"Prefer": "respond-async"})
    if kickoff.status_code != 202:
        return Seen(kickoff.status_code)
    status_url = kickoff.headers["content-location"].replace("http://testserver", "")
    await runner.wait(status_url.rsplit("=", 1)[1])
    names: set[str] = set()
    for item in parse(await http.get(status_url))["output"]:
        response = await http.get(item["url"].replace("http://testserver", ""))
        resources = [parse(httpx.Response(200, content=line)) for line in response.content.splitlines() if line]
        names |= world.visible(resources)
        names |= {world.extra["provenance"][r["id"]] for r in resources if r["id"] in world.extra["provenance"]}
    return seen(200, frozenset(names))


async def _batch_get(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{world.ids['pFR']}"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={q(world.system + '|')}"}}]}
    response = await http.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    if response.status_code != 200:
        return Seen(response.status_code)
    read, search = parse(response)["entry"]
    status = int(read["response"]["status"].split()[0])
    return Seen(status, _entries(search.get("resource", {}), world) | world.visible([read.get("resource") or {}]))


def tags_in_use(url: Callable[[World], str]) -> Probe:
    """``$meta``: its status and the seed resources whose tags (their names) it reports in use."""
    async def probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
        response = await http.get(f"/fhir/{url(world)}")
        if response.status_code != 200:
            return Seen(response.status_code)
        found = parse(response)["parameter"][0]["valueMeta"]
        return Seen(200, frozenset(t["code"] for t in found.get("tag", []) if t.get("system") == world.system))
    return probe


async def _report(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
    response = await http.get(f"/fhir/$registry-report?center={world.fr}")
    if response.status_code != 200:
        return Seen(response.status_code)
    groups = parse(response)["group"]
    patients = next(g for g in groups if g["code"]["coding"][0]["code"] == "patients")
    return seen(200, f"patients={patients['population'][0]['count']}")


async def _report_page(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
    """``/report`` (the page for people): its "Registered patients" card, filtered to center FR."""
    response = await http.get(f"/report?center={world.fr}")
    if response.status_code != 200:
        return Seen(response.status_code)
    card = re.search(r"Registered patients<b>(\d+)</b>", response.text)
    return seen(200, f"patients={card.group(1) if card else None}")


async def _page_link(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
    """The next-page link of center FR's own search (made by the FR client, see ``world``)."""
    response = await http.get(world.extra["fr-next-page"])
    if response.status_code != 200:
        return Seen(response.status_code)
    return Seen(200, _entries(parse(response), world))


def _job_url(key: str) -> Probe:
    async def probe(http: httpx.AsyncClient, world: World, _cell: Cell) -> Seen:
        return Seen((await http.get(world.extra[key])).status_code)
    return probe


OBSERVATIONS_FR = frozenset({"oFR-a", "oFR-b"})
READS = [
    Row("read", get(lambda w: f"Patient/{w.ids['pFR']}"), fr_only(seen(200, "pFR"))),
    Row("vread", get(lambda w: f"Patient/{w.ids['pFR']}/_history/1"), fr_only(seen(200, "pFR"))),
    Row("read a shared resource", get(lambda w: f"Organization/{w.ids['lab']}"),
        by(seen(200, "lab"), seen(200, "lab"), seen(200, "lab"), REFUSED)),
    Row("read a resource of no single center", get(lambda w: f"Group/{w.ids['gBoth']}"),
        by(NOT_FOUND, NOT_FOUND, seen(200, "gBoth"), REFUSED)),
    Row("history (instance)", get(lambda w: f"Patient/{w.ids['pFR']}/_history"), fr_only(seen(200, "pFR"))),
    Row("history (type)", get(lambda w: f"Patient/_history?_since={q(w.start.isoformat())}"),
        by(seen(200, "pFR"), seen(200, "pDE"), seen(200, "pFR", "pDE"), REFUSED)),
    Row("history (system)", get(lambda w: f"_history?_since={q(w.start.isoformat())}&_count=1000"),
        by(seen(200, FR, SHARED), seen(200, DE, SHARED), seen(200, ALL), REFUSED)),
    Row("history at a time (type, _at)", get(lambda w: f"Patient/_history?_at=ge{q(w.start.isoformat())}"),
        by(seen(200, "pFR"), seen(200, "pDE"), seen(200, "pFR", "pDE"), REFUSED)),
    Row("history at a time (system, _at)", get(lambda w: f"_history?_at=ge{q(w.start.isoformat())}&_count=1000"),
        by(seen(200, FR, SHARED), seen(200, DE, SHARED), seen(200, ALL), REFUSED)),
    Row("search", get(lambda w: f"Patient?identifier={q(w.system + '|')}"),
        by(seen(200, "pFR"), seen(200, "pDE"), seen(200, "pFR", "pDE"), REFUSED)),
    Row("search across types (_type)", get(lambda w: f"?_type=Patient,Group&identifier={q(w.system + '|')}"),
        by(seen(200, "pFR", "gFR"), seen(200, "pDE"), seen(200, "pFR", "pDE", "gFR", "gBoth"), REFUSED)),
    Row("_total=accurate", total(lambda w: f"Observation?identifier={q(w.system + '|')}&_total=accurate"),
        by(seen(200, "total=2"), seen(200, "total=1"), seen(200, "total=3"), REFUSED)),
    Row("_summary=count", total(lambda w: f"Observation?identifier={q(w.system + '|')}&_summary=count"),
        by(seen(200, "total=2"), seen(200, "total=1"), seen(200, "total=3"), REFUSED)),
    Row("_include", get(lambda w: f"Observation?identifier={q(w.system + '|')}&_include=Observation:subject"),
        by(seen(200, OBSERVATIONS_FR, "pFR"), seen(200, "oDE", "pDE"),
           seen(200, OBSERVATIONS_FR, "oDE", "pFR", "pDE"), REFUSED)),
    Row("_include:iterate", get(lambda w: f"Observation?identifier={q(w.system + '|')}"
                                          "&_include=Observation:subject&_include:iterate=Patient:organization"),
        by(seen(200, OBSERVATIONS_FR, "pFR", "orgFR"), seen(200, "oDE", "pDE", "orgDE"),
           seen(200, OBSERVATIONS_FR, "oDE", "pFR", "pDE", "orgFR", "orgDE"), REFUSED)),
    Row("_include=*", get(lambda w: f"Group?identifier={q(w.system + '|')}&_include=*"),
        by(seen(200, "gFR", "pFR"), NOTHING, seen(200, "gFR", "gBoth", "pFR", "pDE"), REFUSED)),
    Row("_revinclude", get(lambda w: f"Patient?identifier={q(w.system + '|')}&_revinclude=Group:member"),
        by(seen(200, "pFR", "gFR"), seen(200, "pDE"), seen(200, "pFR", "pDE", "gFR", "gBoth"), REFUSED)),
    Row("_revinclude=*", get(lambda w: f"Patient?identifier={q(w.system + '|')}&_revinclude=*"),
        by(seen(200, "pFR", OBSERVATIONS_FR, "gFR"), seen(200, "pDE", "oDE"),
           seen(200, "pFR", "pDE", OBSERVATIONS_FR, "oDE", "gFR", "gBoth"), REFUSED)),
    Row("chain", get(lambda w: f"Observation?subject:Patient.identifier={idn('pFR')(w)}"),
        by(seen(200, OBSERVATIONS_FR), NOTHING, seen(200, OBSERVATIONS_FR), REFUSED)),
    Row("_filter", get(lambda w: f"Patient?_filter={q('identifier eq ' + w.system + '| or gender pr false')}"),
        by(seen(200, "pFR"), seen(200, "pDE"), seen(200, "pFR", "pDE"), REFUSED)),
    Row("_filter with a chain",
        get(lambda w: f"Observation?_filter={q('patient.identifier eq ' + w.system + '|' + w.ident('pFR'))}"),
        by(seen(200, OBSERVATIONS_FR), NOTHING, seen(200, OBSERVATIONS_FR), REFUSED)),
    Row("chain of two links", get(lambda w: "Observation?subject:Patient.organization.identifier="
                                            f"{q(CENTER_SYSTEM + '|' + w.fr)}"),
        by(seen(200, OBSERVATIONS_FR), NOTHING, seen(200, OBSERVATIONS_FR), REFUSED)),
    Row("Patient/$match", _match_probe, by(seen(200, "pFR"), NOTHING, seen(200, "pFR"), REFUSED)),
    Row("_has", get(lambda w: f"Patient?_has:Observation:subject:identifier={idn('oFR-a')(w)}"),
        by(seen(200, "pFR"), NOTHING, seen(200, "pFR"), REFUSED)),
    Row("_has over a resource the caller may not see",
        get(lambda w: f"Patient?identifier={q(w.system + '|')}&_has:Group:member:identifier={idn('gBoth')(w)}"),
        by(NOTHING, NOTHING, seen(200, "pFR", "pDE"), REFUSED)),
    Row("compartment search", get(lambda w: f"Patient/{w.ids['pFR']}/Observation"),
        by(seen(200, OBSERVATIONS_FR), NOTHING, seen(200, OBSERVATIONS_FR), REFUSED)),
    Row("compartment search of every type (*)", get(lambda w: f"Patient/{w.ids['pFR']}/*"),
        by(seen(200, "pFR", OBSERVATIONS_FR, "gFR"), NOTHING, seen(200, "pFR", OBSERVATIONS_FR, "gFR", "gBoth"),
           REFUSED)),
    Row("$everything", get(lambda w: f"Patient/{w.ids['pFR']}/$everything"),
        by(seen(200, "pFR", OBSERVATIONS_FR, "gFR", "orgFR"), NOT_FOUND,
           seen(200, "pFR", OBSERVATIONS_FR, "gFR", "gBoth", "orgFR"), REFUSED)),
    Row("$lastn", get(lambda w: f"Observation/$lastn?identifier={q(w.system + '|')}&max=5"),
        by(seen(200, OBSERVATIONS_FR), seen(200, "oDE"), seen(200, OBSERVATIONS_FR, "oDE"), REFUSED)),
    Row("$meta (instance)", tags_in_use(lambda w: f"Patient/{w.ids['pFR']}/$meta"), fr_only(seen(200, "pFR"))),
    Row("$meta (version)", tags_in_use(lambda w: f"Patient/{w.ids['pFR']}/_history/1/$meta"),
        fr_only(seen(200, "pFR"))),
    Row("$meta (type)", tags_in_use(lambda _w: "Observation/$meta"),
        by(seen(200, OBSERVATIONS_FR), seen(200, "oDE"), seen(200, OBSERVATIONS_FR, "oDE"), REFUSED)),
    Row("$meta (system)", tags_in_use(lambda _w: "$meta"),
        by(seen(200, FR, SHARED), seen(200, DE, SHARED), seen(200, ALL), REFUSED)),
    Row("$risk-scores", status_only("GET", lambda w: f"/fhir/Patient/{w.ids['pFR']}/$risk-scores"),
        fr_only(Seen(200))),
    Row("instance operation ($validate)", status_only("GET", lambda w: f"/fhir/Patient/{w.ids['pFR']}/$validate"),
        fr_only(Seen(200))),
    Row("Bundle GET entries", _batch_get,
        by(seen(200, "pFR"), seen(404, "pDE"), seen(200, "pFR", "pDE"), REFUSED)),
    Row("$export (system)", export(lambda w: f"$export?_since={q(w.start.isoformat())}"),
        by(seen(200, FR, SHARED), seen(200, DE, SHARED), seen(200, ALL), REFUSED)),
    Row("$export (Patient)", export(lambda w: f"Patient/$export?_since={q(w.start.isoformat())}"),
        by(seen(200, "pFR", OBSERVATIONS_FR, "gFR"), seen(200, "pDE", "oDE"),
           seen(200, "pFR", "pDE", OBSERVATIONS_FR, "oDE", "gFR", "gBoth"), REFUSED)),
    Row("$export (Patient, patient=pFR)",
        export(lambda w: f"Patient/$export?patient=Patient/{w.ids['pFR']}&_since={q(w.start.isoformat())}"),
        by(seen(200, "pFR", OBSERVATIONS_FR, "gFR"), Seen(400),  # DE: "not known", as on every path
           seen(200, "pFR", OBSERVATIONS_FR, "gFR", "gBoth"), REFUSED)),
    Row("$export with its associated Provenance", _associated_provenance,
        by(seen(200, "pFR", "provenance of pFR"), seen(200, "pDE"),
           seen(200, "pFR", "pDE", "provenance of pFR", "provenance of pFR and pDE"), REFUSED)),
    Row("$export (Group)", export(lambda w: f"Group/{w.ids['gFR']}/$export"),
        by(seen(200, "pFR", OBSERVATIONS_FR, "gFR"), NOT_FOUND, seen(200, "pFR", OBSERVATIONS_FR, "gFR", "gBoth"),
           REFUSED)),
    Row("$registry-report", _report,
        by(seen(200, "patients=1"), seen(200, "patients=0"), seen(200, "patients=1"), REFUSED)),
    Row("/report", _report_page,
        by(seen(200, "patients=1"), seen(200, "patients=0"), seen(200, "patients=1"), seen(200, "patients=0"))),
    Row("paging link of another caller", _page_link,
        by(seen(200, "oFR-b"), Seen(410), Seen(410), REFUSED)),
    Row("export status of another caller's job", _job_url("fr-export-status"),
        by(Seen(200), NOT_FOUND, NOT_FOUND, NOT_FOUND)),
    Row("export file of another caller's job", _job_url("fr-export-file"),
        by(Seen(200), NOT_FOUND, NOT_FOUND, NOT_FOUND)),
    Row("reindex status of another caller's job", _job_url("maintainer-reindex-status"),
        by(NOT_FOUND, NOT_FOUND, NOT_FOUND, Seen(200))),
    # the job counts every center's resources: only maintainers (and admins) start one
    Row("$reindex", status_only("POST", lambda w: "/fhir/Group/$reindex"),
        by(Seen(403), Seen(403), Seen(403), Seen(202))),
]


# -- write paths: each cell arranges fresh resources as the system, writes as its caller, then checks ------------


async def _fresh(cell: Cell, world: World, kind: str, center: str, **content: Any) -> str:
    """A new resource of ``center`` ("FR"/"DE", through its seed patient or organization), stored by the
    system; its id."""
    resource: dict[str, Any] = {"resourceType": kind, **content}
    resource.setdefault("identifier", []).append(_unique_identifier(world))
    if kind == "Observation":
        resource.update(status="final", code={"text": "fresh"},
                        subject={"reference": f"Patient/p{center}-{world.marker}"})
    if kind == "Patient":
        resource["managingOrganization"] = {"reference": f"Organization/org{center}-{world.marker}"}
    response = await cell.admin.post(f"/fhir/{kind}", content=body(resource), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text
    return str(parse(response)["id"])


async def _center_of(cell: Cell, world: World, kind: str, ident: str) -> str:
    """Where a resource is stored: ``FR``/``DE`` (this module's centers), ``deleted``, ``absent``, or the code."""
    doc = await cell.db[kind].find_one({"_id": ident})
    if doc is None:
        return "absent"
    if doc["deleted"]:
        return "deleted"
    return {world.fr: "FR", world.de: "DE"}.get(doc.get("center"), str(doc.get("center")))


def _unique_identifier(world: World) -> dict[str, str]:
    return {"system": world.fresh_system, "value": uuid.uuid4().hex}


async def _create_referring(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "new"},
           "subject": {"reference": f"Patient/{world.ids['pFR']}"}}
    response = await http.post("/fhir/Observation", content=body(obs), headers={"Content-Type": FHIR_JSON})
    if response.status_code != 201:
        return Seen(response.status_code)
    return seen(201, await _center_of(cell, world, "Observation", parse(response)["id"]))


async def _create_center_organization(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    org = {"resourceType": "Organization", "identifier": [{"system": CENTER_SYSTEM, "value": world.fr}]}
    response = await http.post("/fhir/Organization", content=body(org), headers={"Content-Type": FHIR_JSON})
    if response.status_code != 201:
        return Seen(response.status_code)
    return seen(201, await _center_of(cell, world, "Organization", parse(response)["id"]))


async def _update(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    ident = await _fresh(cell, world, "Patient", "FR")
    patient = {"resourceType": "Patient", "id": ident, "gender": "other",
               "managingOrganization": {"reference": f"Organization/{world.ids['orgFR']}"}}
    response = await http.put(f"/fhir/Patient/{ident}", content=body(patient), headers={"Content-Type": FHIR_JSON})
    return seen(response.status_code, await _center_of(cell, world, "Patient", ident))


async def _update_shared(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    ident = await _fresh(cell, world, "Organization", "shared", name="shared")
    org = {"resourceType": "Organization", "id": ident, "name": "renamed"}
    response = await http.put(f"/fhir/Organization/{ident}", content=body(org), headers={"Content-Type": FHIR_JSON})
    return seen(response.status_code, await _center_of(cell, world, "Organization", ident))


async def _patch(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    ident = await _fresh(cell, world, "Patient", "FR")
    patch = [{"op": "add", "path": "/gender", "value": "other"}]
    response = await http.patch(f"/fhir/Patient/{ident}", content=body(patch),
                                headers={"Content-Type": "application/json-patch+json"})
    return seen(response.status_code, await _center_of(cell, world, "Patient", ident))


async def _delete(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    ident = await _fresh(cell, world, "Observation", "FR")
    response = await http.delete(f"/fhir/Observation/{ident}")
    return seen(response.status_code, await _center_of(cell, world, "Observation", ident))


async def _conditional_create(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    """Criteria that match only center DE's Observation: DE gets it (200); FR gets a new one of its own."""
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "cond"},
           "identifier": [{"system": world.system, "value": world.ident("oDE")}]}
    response = await http.post("/fhir/Observation", content=body(obs), headers={
        "Content-Type": FHIR_JSON, "If-None-Exist": f"identifier={idn('oDE')(world)}"})
    if response.status_code not in (200, 201):
        return Seen(response.status_code)
    ident = parse(response)["id"]
    name = world.name_of("Observation", ident)
    if name is None:
        name = f"new in {await _center_of(cell, world, 'Observation', ident)}"
        await cell.admin.delete(f"/fhir/Observation/{ident}")  # the next cell's criteria match DE's alone again
    return seen(response.status_code, name)


async def _conditional_update(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    """Criteria that match only a DE Observation: DE updates it; FR creates its own."""
    target = await _fresh(cell, world, "Observation", "DE", identifier=[_unique_identifier(world)])
    stored = parse(await cell.admin.get(f"/fhir/Observation/{target}"))
    criteria = q(f"{stored['identifier'][0]['system']}|{stored['identifier'][0]['value']}")
    obs = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    obs["status"] = "amended"
    obs.pop("subject")  # a body FR may send too (a reference to DE's patient would be refused first)
    response = await http.put(f"/fhir/Observation?identifier={criteria}", content=body(obs),
                              headers={"Content-Type": FHIR_JSON})
    if response.status_code not in (200, 201):
        return Seen(response.status_code, frozenset({f"target {await _center_of(cell, world, 'Observation', target)}"}))
    ident = parse(response)["id"]
    where = await _center_of(cell, world, "Observation", ident)
    return seen(response.status_code, "the target" if ident == target else f"new in {where}")


async def _conditional_delete(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    target = await _fresh(cell, world, "Observation", "DE", identifier=[_unique_identifier(world)])
    stored = parse(await cell.admin.get(f"/fhir/Observation/{target}"))
    criteria = q(f"{stored['identifier'][0]['system']}|{stored['identifier'][0]['value']}")
    response = await http.delete(f"/fhir/Observation?identifier={criteria}")
    return seen(response.status_code, await _center_of(cell, world, "Observation", target))


async def _conditional_patch(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    """Criteria that match only a DE Observation: DE patches it; FR's criteria match nothing it may see (404)."""
    target = await _fresh(cell, world, "Observation", "DE", identifier=[_unique_identifier(world)])
    stored = parse(await cell.admin.get(f"/fhir/Observation/{target}"))
    criteria = q(f"{stored['identifier'][0]['system']}|{stored['identifier'][0]['value']}")
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    response = await http.patch(f"/fhir/Observation?identifier={criteria}", content=body(patch),
                                headers={"Content-Type": "application/json-patch+json"})
    after = parse(await cell.admin.get(f"/fhir/Observation/{target}"))
    return seen(response.status_code, "target amended" if after["status"] == "amended" else "target unchanged")


async def _transaction(http: httpx.AsyncClient, world: World, cell: Cell, subject: str) -> Seen:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8c7e1d9a-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "tx"},
                      "subject": {"reference": subject}}, "request": {"method": "POST", "url": "Observation"}}]}
    response = await http.post("/fhir", content=body(bundle), headers={"Content-Type": FHIR_JSON})
    if response.status_code != 200:
        return Seen(response.status_code)
    found = set()
    for entry in parse(response)["entry"]:
        kind, ident = entry["response"]["location"].split("/fhir/")[-1].split("/")[:2]
        found.add(f"{kind} in {await _center_of(cell, world, kind, ident)}")
    return Seen(200, frozenset(found))


async def _transaction_urn(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    return await _transaction(http, world, cell, "urn:uuid:8c7e1d9a-0000-4000-8000-000000000001")


async def _transaction_conditional_reference(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    return await _transaction(http, world, cell, f"Patient?identifier={world.system}|{world.ident('pFR')}")


async def _meta_add(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    return await _tag(http, cell, "Patient", await _fresh(cell, world, "Patient", "FR"))


async def _meta_add_shared(http: httpx.AsyncClient, world: World, cell: Cell) -> Seen:
    return await _tag(http, cell, "Organization", await _fresh(cell, world, "Organization", "shared", name="shared"))


async def _tag(http: httpx.AsyncClient, cell: Cell, kind: str, ident: str) -> Seen:
    """``$meta-add`` of a tag: its status, and whether the stored resource carries the tag."""
    meta = {"resourceType": "Parameters",
            "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "urn:isolation", "code": "t"}]}}]}
    response = await http.post(f"/fhir/{kind}/{ident}/$meta-add", content=body(meta),
                               headers={"Content-Type": FHIR_JSON})
    doc = await cell.db[kind].find_one({"_id": ident})
    tagged = any(tag.get("code") == "t" for tag in doc["resource"]["meta"].get("tag", []))
    return seen(response.status_code, "tagged" if tagged else "untagged")


FORBIDDEN = Seen(403)
WRITES = [
    Row("create referring to a center's patient", _create_referring,
        by(seen(201, "FR"), FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    Row("create an Organization with a center's identifier", _create_center_organization,
        by(seen(201, "FR"), FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    Row("update", _update, by(seen(200, "FR"), seen(404, "FR"), seen(403, "FR"), seen(403, "FR"))),
    Row("update a shared resource", _update_shared,
        by(seen(403, "None"), seen(403, "None"), seen(403, "None"), seen(403, "None"))),
    Row("patch", _patch, by(seen(200, "FR"), seen(404, "FR"), seen(403, "FR"), seen(403, "FR"))),
    Row("delete", _delete, by(seen(204, "deleted"), seen(204, "FR"), seen(403, "FR"), seen(403, "FR"))),
    Row("$meta-add", _meta_add, by(seen(200, "tagged"), seen(404, "untagged"), seen(403, "untagged"),
                                   seen(403, "untagged"))),
    Row("$meta-add of a shared resource", _meta_add_shared,
        by(seen(403, "untagged"), seen(403, "untagged"), seen(403, "untagged"), seen(403, "untagged"))),
    Row("conditional create", _conditional_create,
        by(seen(201, "new in FR"), seen(200, "oDE"), FORBIDDEN, FORBIDDEN)),
    Row("conditional update", _conditional_update,
        by(seen(201, "new in FR"), seen(200, "the target"), seen(403, "target DE"), seen(403, "target DE"))),
    Row("conditional delete", _conditional_delete,
        by(seen(204, "DE"), seen(204, "deleted"), seen(403, "DE"), seen(403, "DE"))),
    Row("conditional patch", _conditional_patch,
        by(seen(404, "target unchanged"), seen(200, "target amended"), seen(403, "target unchanged"),
           seen(403, "target unchanged"))),
    Row("transaction (urn:uuid references)", _transaction_urn,
        by(seen(200, "Patient in FR", "Observation in FR"), seen(200, "Patient in DE", "Observation in DE"),
           FORBIDDEN, FORBIDDEN)),
    Row("transaction (conditional reference)", _transaction_conditional_reference,
        by(seen(200, "Patient in FR", "Observation in FR"), Seen(404), FORBIDDEN, FORBIDDEN)),
]
ROWS = READS + WRITES


# -- the fixtures and the test -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def world(servers: Servers, client: httpx.AsyncClient) -> AsyncIterator[World]:
    """The seed, plus what one caller made for the others to try: center FR's next-page link and export job,
    the maintainer's reindex job."""
    world = new_world()
    await store_seed(client, world)
    world.extra["provenance"] = {}
    for name, targets in (("provenance of pFR", ["pFR"]), ("provenance of pFR and pDE", ["pFR", "pDE"])):
        provenance = {"resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
                      "agent": [{"who": {"display": "the registry"}}],
                      "target": [{"reference": f"Patient/{world.ids[t]}"} for t in targets]}
        stored = await client.post("/fhir/Provenance", content=body(provenance), headers={"Content-Type": FHIR_JSON})
        assert stored.status_code == 201, stored.text
        world.extra["provenance"][parse(stored)["id"]] = name
    async with await _open(OWN, servers, world) as fr:
        first = parse(await fr.get(f"/fhir/Observation?identifier={q(world.system + '|')}&_count=1"))
        assert _entries(first, world) == {"oFR-a"}
        world.extra["fr-next-page"] = next(link["url"] for link in first["link"] if link["relation"] == "next")
        kickoff = await fr.get(f"/fhir/$export?_type=Patient&_since={q(world.start.isoformat())}",
                               headers={"Prefer": "respond-async"})
        status_url = kickoff.headers["content-location"]
        await runner.wait(status_url.rsplit("=", 1)[1])
        world.extra["fr-export-status"] = status_url
        world.extra["fr-export-file"] = parse(await fr.get(status_url))["output"][0]["url"]
    async with await _open(MAINTAINER, servers, world) as maintainer:
        reindex = await maintainer.post("/fhir/Organization/$reindex")
        assert reindex.status_code == 202, reindex.text
        world.extra["maintainer-reindex-status"] = reindex.headers["content-location"]
        for _ in range(400):
            if (await maintainer.get(world.extra["maintainer-reindex-status"])).status_code == 200:
                break
            await asyncio.sleep(0.05)
    yield world


@pytest.fixture(scope="module")
def servers(services: Services, smart_services: Services) -> Servers:
    return Servers(services, smart_services)


async def _open(column: str, servers: Servers, world: World) -> httpx.AsyncClient:
    return await next(c for c in COLUMNS if c.name == column).open(servers, world)


def _cells() -> Iterator[Any]:
    for row in ROWS:
        for column in COLUMNS:
            yield pytest.param(row, column, id=f"{row.path} | {column.name}")


def test_every_row_has_an_expectation_for_every_column() -> None:
    names = sorted(c.name for c in COLUMNS)
    assert [sorted({*row.expected, *EVERY_ROW}) for row in ROWS] == [names] * len(ROWS)


@pytest.mark.parametrize(("row", "column"), list(_cells()))
async def test_isolation(row: Row, column: Column, world: World, servers: Servers, client: httpx.AsyncClient,
                         db: AsyncDatabase) -> None:
    async with await column.open(servers, world) as http:
        expected = row.expectation(column.name)
        assert (await row.probe(http, world, Cell(client, db))).shown_as(expected) == expected
