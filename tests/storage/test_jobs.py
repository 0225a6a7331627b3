"""The one job store (``fhir_server/storage/jobs.py``) over MongoDB: a job whose process died is taken over or
failed, never left ``in-progress``; the process that lost it cannot write to it any more; finished jobs expire."""

from __future__ import annotations

from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from fhir_server.storage.documents import JOBS, now_ms
from fhir_server.storage.jobs import COMPLETED, FAILED, IN_PROGRESS, PROCESS, STALE_AFTER_SECONDS
from tests.conftest import unique

KIND = "test-job"


async def _stop_heartbeat(db: AsyncDatabase, job_id: str) -> None:
    """What the death of the owner's process looks like from outside: no heartbeat for too long."""
    stale = now_ms() - timedelta(seconds=STALE_AFTER_SECONDS + 1)
    await db[JOBS].update_one({"_id": job_id}, {"$set": {"heartbeat": stale}})


async def test_a_job_whose_process_died_is_taken_over_and_its_old_owner_is_refused(
        services: Services, db: AsyncDatabase) -> None:
    jobs = services.store.jobs(KIND)
    job_id = unique()
    await jobs.insert({"_id": job_id, "owner": "elsewhere:1:dead", "expires": now_ms() + timedelta(hours=1)})
    assert await jobs.take_over_if_stale(job_id) is None  # its heartbeat is fresh: its owner is alive
    await _stop_heartbeat(db, job_id)
    taken = await jobs.take_over_if_stale(job_id)
    assert taken is not None and taken["owner"] == PROCESS and taken["status"] == IN_PROGRESS
    assert not await jobs.update(job_id, "elsewhere:1:dead", set_fields={"progress": "late"})
    assert await jobs.update(job_id, PROCESS, set_fields={"status": COMPLETED})
    assert await jobs.take_over_if_stale(job_id) is None  # finished: nothing to take over


async def test_a_job_whose_process_died_can_be_failed_instead(services: Services, db: AsyncDatabase) -> None:
    jobs = services.store.jobs(KIND)
    job_id = unique()
    await jobs.insert({"_id": job_id, "owner": "elsewhere:1:dead", "expires": now_ms() + timedelta(hours=1)})
    assert await jobs.fail_if_stale(job_id, {"message": "gone"}) is None
    await _stop_heartbeat(db, job_id)
    assert await jobs.stale() == [job_id]
    failed = await jobs.fail_if_stale(job_id, {"message": "gone"})
    assert failed is not None and failed["status"] == FAILED and failed["message"] == "gone"
    assert await jobs.stale() == []


async def test_jobs_expire_unless_a_live_process_runs_them(services: Services, db: AsyncDatabase) -> None:
    jobs = services.store.jobs(KIND)
    past = now_ms() - timedelta(seconds=1)
    finished, running, dead = unique(), unique(), unique()
    await jobs.insert({"_id": finished, "status": COMPLETED, "expires": past})
    await jobs.insert({"_id": running, "expires": past})
    await jobs.insert({"_id": dead, "expires": past})
    await _stop_heartbeat(db, dead)
    assert sorted(await jobs.expired(now_ms())) == sorted([finished, dead])
    assert await services.store.jobs("another-kind").expired(now_ms()) == []
    for job_id in (finished, running, dead):
        assert await jobs.remove(job_id)
