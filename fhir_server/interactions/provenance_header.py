"""The ``X-Provenance`` header (https://hl7.org/fhir/R4/http.html#custom, provenance.html): a Provenance
resource, in JSON, that a client sends with a create, an update or a patch, written in the same transaction as
that write, with the version written added to its ``target``.

Atomic both ways: a header that is not a Provenance, or a Provenance the write checks refuse, fails the write
(400, 422), and nothing is stored. A write that stores no new version (a conditional create that matched, an
update with identical content) stores no Provenance either: there is no new version to be the provenance of.
``recorded``, when the client leaves it out, is the time of the write. A delete takes no ``X-Provenance``
(400): a tombstone has no content to trace.
"""

from __future__ import annotations

from typing import Any

from fhir_server import fhirjson
from fhir_server.errors import FhirError, InvalidRequest
from fhir_server.interactions.create import create
from fhir_server.interactions.request import PROVENANCE_HEADER, TRACED_WRITES, FhirRequest
from fhir_server.interactions.result import InteractionResult
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.storage.documents import instant


def parse_provenance(request: FhirRequest) -> dict[str, Any] | None:
    """The Provenance of ``request``'s ``X-Provenance`` header (None without one); 400 when it is not one or
    comes with an interaction that takes none."""
    raw = request.headers.get(PROVENANCE_HEADER)
    if raw is None:
        return None
    if request.interaction not in TRACED_WRITES:
        raise InvalidRequest("X-Provenance comes with a create, an update or a patch", code="not-supported",
                             expression=("X-Provenance",))
    try:  # a header arrives as Latin-1: its bytes are the client's UTF-8
        provenance = fhirjson.loads(raw.encode("latin-1").decode("utf-8"))
    except (UnicodeError, FhirError) as exc:
        raise InvalidRequest(f"X-Provenance is not a JSON resource: {exc}", code="structure",
                             expression=("X-Provenance",)) from exc
    if not isinstance(provenance, dict) or provenance.get("resourceType") != "Provenance":
        raise InvalidRequest("X-Provenance holds a Provenance resource", code="invalid", expression=("X-Provenance",))
    return provenance


async def stage_provenance(uow: UnitOfWork, provenance: dict[str, Any],
                           written: InteractionResult) -> InteractionResult | None:
    """Create ``provenance`` in ``uow`` with the version ``written`` stored in its target; None when the write
    stored no new version."""
    version = written.version
    if version is None or uow.pending_resource(f"{version.type}/{version.id}") is None:
        return None
    target = {"reference": f"{version.type}/{version.id}/_history/{version.vid}"}
    targets = [t for t in provenance.get("target") or () if t != target]
    stored = {key: value for key, value in provenance.items() if key != "id"}  # the server names it
    stored["target"] = [*targets, target]
    stored.setdefault("recorded", instant(version.last_updated))
    return await create(uow, "Provenance", stored)
