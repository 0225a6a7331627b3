"""Two writers of one new id (http.html#upsert, update as create): the race is settled by MongoDB, not by a check
before the insert (``ResourceStore.apply``)."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from fhir_server.context import RequestContext
from fhir_server.permissions import Role
from fhir_server.storage.documents import ResourceWrite
from fhir_server.storage.store import ResourceStore

POITIERS = RequestContext(base_url="http://testserver/fhir", role=Role.EHR, center="FR-POI")


def _write(ident: str, family: str) -> ResourceWrite:
    return ResourceWrite(type="Patient", id=ident, vid=1, last_updated=datetime.now(UTC), method="PUT",
                         resource={"resourceType": "Patient", "id": ident, "name": [{"family": family}]},
                         search_values={})


async def test_an_id_committed_after_a_transactions_snapshot_reruns_it_and_the_rerun_sees_it_stored(
        private_store: ResourceStore) -> None:
    """An update-as-create racing another writer of the same id: the insert meets the other's committed key as
    a write conflict (``TransientTransactionError``, not a duplicate key error), so the driver runs the whole
    transaction again, and the new snapshot finds the id stored (the update path)."""
    store = private_store
    seen: list[str | None] = []

    async def update_as_create(session: AsyncClientSession) -> None:
        stored = await store.current(POITIERS, "Patient", "race", session)
        seen.append(stored.id if stored is not None else None)
        if stored is not None:
            return
        if len(seen) == 1:  # the other writer commits after this transaction's snapshot
            await store.run_transaction(lambda other: store.apply(POITIERS, [_write("race", "a")], other))
        await store.apply(POITIERS, [_write("race", "b")], session)

    await store.run_transaction(update_as_create)
    assert seen == [None, "race"]
