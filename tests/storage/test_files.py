"""Files in GridFS (``fhir_server/storage/files.py``, https://www.mongodb.com/docs/manual/core/gridfs/): a writer
holds a bounded buffer whatever the file's size, writes the GridFS format (the driver's own reader reads it),
and a file exists only once its writer is closed."""

from __future__ import annotations

import random

from gridfs import DEFAULT_CHUNK_SIZE, AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.services import Services
from fhir_server.storage.files import EXPORT_BUCKET
from tests.conftest import unique

MEGABYTE = 1 << 20


def _lines(total: int, seed: int) -> list[bytes]:
    """NDJSON-like lines of varied lengths, ``total`` bytes in all."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < total:
        line = b'{"id":"%d","text":"%s"}\n' % (len(lines), b"x" * rng.randrange(50, 4000))
        lines.append(line)
        size += len(line)
    return lines


async def test_a_writer_of_many_megabytes_sends_its_chunks_as_it_goes(services: Services, db: AsyncDatabase) -> None:
    owner = unique()
    name = f"{owner}/1/Observation-1.ndjson"
    writer = services.store.files().writer(name)
    written = 0
    most_unsent = 0
    for line in _lines(12 * MEGABYTE, seed=1):
        await writer.write(line)
        written += len(line)
        stored = await db[f"{EXPORT_BUCKET}.chunks"].count_documents({"files_id": name})
        most_unsent = max(most_unsent, written - stored * DEFAULT_CHUNK_SIZE)
    assert most_unsent <= 2 * MEGABYTE  # the driver's AsyncGridIn holds up to 48 MB before its first insert
    assert not await services.store.files().exists(name)  # not closed: not a file yet
    await writer.close()
    assert await services.store.files().exists(name)


async def test_a_multi_chunk_file_reads_back_byte_identical_by_ours_and_the_drivers_reader(
        services: Services, db: AsyncDatabase) -> None:
    name = f"{unique()}/1/Condition-1.ndjson"
    lines = _lines(3 * MEGABYTE + 12345, seed=2)
    async with services.store.files().writer(name) as writer:
        for line in lines:
            await writer.write(line)
    expected = b"".join(lines)
    stored = await services.store.files().open(name)
    assert stored is not None and stored.length == len(expected)
    assert b"".join([chunk async for chunk in stored.chunks()]) == expected
    driver = await AsyncGridFSBucket(db, bucket_name=EXPORT_BUCKET).open_download_stream(name)
    assert await driver.read() == expected
    numbers = [doc["n"] async for doc in db[f"{EXPORT_BUCKET}.chunks"].find({"files_id": name}).sort("n", 1)]
    assert numbers == list(range(-(-len(expected) // DEFAULT_CHUNK_SIZE)))  # every chunk full but the last


async def test_an_empty_file_exists_once_closed(services: Services) -> None:
    name = f"{unique()}/1/Patient-1.ndjson"
    async with services.store.files().writer(name):
        pass
    stored = await services.store.files().open(name)
    assert stored is not None and stored.length == 0
    assert [chunk async for chunk in stored.chunks()] == []


async def test_an_aborted_writer_leaves_no_chunks_and_no_file(services: Services, db: AsyncDatabase) -> None:
    name = f"{unique()}/1/Patient-1.ndjson"
    writer = services.store.files().writer(name)
    for line in _lines(2 * MEGABYTE, seed=3):
        await writer.write(line)
    assert await db[f"{EXPORT_BUCKET}.chunks"].count_documents({"files_id": name}) > 0
    await writer.abort()
    assert await db[f"{EXPORT_BUCKET}.chunks"].count_documents({"files_id": name}) == 0
    assert await services.store.files().open(name) is None


async def test_a_half_written_file_is_removed_with_its_owner(services: Services, db: AsyncDatabase) -> None:
    """A writer that died (never closed, never aborted) leaves chunks without a file document; its owner's
    cleanup by prefix finds them."""
    owner = unique()
    name = f"{owner}/1/Observation-1.ndjson"
    writer = services.store.files().writer(name)
    for line in _lines(2 * MEGABYTE, seed=4):
        await writer.write(line)
    await services.store.files().remove_owned(owner)
    assert await db[f"{EXPORT_BUCKET}.chunks"].count_documents({"files_id": name}) == 0
