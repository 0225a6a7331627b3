"""Loading the registry's implementation guide (``profiles/``) at start, idempotently.

Each conformance resource is identified by its canonical ``url`` and ``version``: if the store already holds
that url|version, nothing is written (a restart changes nothing, and a newer version published by a
terminology maintainer is never overwritten by the file); otherwise it is created, at the file's id when
that id is free. A url|version found only in history (replaced in place by a newer version, or deleted by
a maintainer) is not created again either: a restart must not resurrect what a maintainer superseded (the
earlier version stays resolvable by url|version from history, see ``fhir_server.conformance``). Concurrent
starts of several processes are safe: the create is conditional (``url=…&version=…``) and so claims its
criteria in the transaction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fhir_server import fhirjson
from fhir_server.context import RequestContext
from fhir_server.interactions.create import create
from fhir_server.interactions.unit_of_work import UnitOfWork, run_in_transaction
from fhir_server.resources import CONFORMANCE_TYPES
from fhir_server.services import Services

log = logging.getLogger(__name__)


def conformance_files(directory: Path) -> list[dict[str, Any]]:
    """The conformance resources of ``directory`` (``rules.json`` and other non-resources are skipped)."""
    out = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("resourceType") in CONFORMANCE_TYPES:
            out.append(data)
    return out


async def load_profiles(services: Services) -> int:
    """Store what is missing of ``FHIR_PROFILES_DIR``; return how many resources were created."""
    directory = services.settings.profiles_dir
    if not directory.is_dir():
        log.warning("No profiles directory at %s: the registry's rules cannot be enforced", directory)
        return 0
    ctx = RequestContext.system()
    created = 0
    for raw in conformance_files(directory):
        resource = fhirjson.loads(json.dumps(raw))  # decimals exact, as for any submission (checked by create)
        if await _load_one(ctx, services, resource):
            created += 1
    if created:
        await services.reload_search_parameters()
    return created


async def _load_one(ctx: RequestContext, services: Services, resource: dict[str, Any]) -> bool:
    criteria = urlencode({"url": resource["url"], **({"version": resource["version"]} if "version" in resource
                                                     else {})})
    kind, wanted_id = resource["resourceType"], resource.get("id")

    async def work(uow: UnitOfWork) -> bool:
        if "version" in resource and await _known_version(uow, kind, resource):
            return False
        free = wanted_id is not None and await uow.current(kind, wanted_id) is None
        assigned = wanted_id if free else None
        result = await create(uow, kind, resource, if_none_exist=criteria, assigned_id=assigned)
        return result.status == 201

    return await run_in_transaction(ctx, services, work)


async def _known_version(uow: UnitOfWork, kind: str, resource: dict[str, Any]) -> bool:
    """Whether any version, current or replaced, already holds this url|version."""
    query = {"resource.url": resource["url"], "resource.version": resource["version"]}
    async for _ in uow.store.versions_matching(uow.ctx, [kind], query, projection={"_id": 1},
                                               session=uow.session, limit=1):
        return True
    return False
