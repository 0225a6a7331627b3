"""Files kept in MongoDB GridFS (https://www.mongodb.com/docs/manual/core/gridfs/): bulk export output, so that
any server node serves any export's files and nothing lives on a node's disk.

A file's id is a string ``<owner>/<rest>`` (an export: ``<job>/<attempt>/<Type>-<n>.ndjson``): everything one
owner wrote, finished or not, is found by that prefix, in ``<bucket>.files`` and in ``<bucket>.chunks`` alike
(GridFS writes a file's document only when it is closed, so the chunks of a file whose writer died have no
document). The driver streams: a writer holds one chunk (255 kB) in memory, a reader one chunk at a time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.database import AsyncDatabase

EXPORT_BUCKET = "export"


class FileWriter:
    """One file being written (``async with``): closed, it exists; on an exception it is aborted (its chunks go)."""

    def __init__(self, grid_in: Any, buffer_bytes: int = 1 << 20) -> None:
        self._grid_in = grid_in
        self._buffer = bytearray()
        self._limit = buffer_bytes
        self.length = 0

    async def write(self, data: bytes) -> None:
        """Buffered: one round trip per ``buffer_bytes``, not per line."""
        self._buffer += data
        self.length += len(data)
        if len(self._buffer) >= self._limit:
            await self._grid_in.write(bytes(self._buffer))
            self._buffer.clear()

    async def close(self) -> None:
        if self._buffer:
            await self._grid_in.write(bytes(self._buffer))
            self._buffer.clear()
        await self._grid_in.close()

    async def abort(self) -> None:
        await self._grid_in.abort()

    async def __aenter__(self) -> FileWriter:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None:
            await self.close()
        else:
            await self.abort()


@dataclass(frozen=True)
class StoredFile:
    """A file to stream: its size and its chunks, read one at a time."""

    length: int
    _grid_out: Any

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await self._grid_out.readchunk():
                yield chunk
        finally:
            await self._grid_out.close()


class FileStore:
    """The files of one GridFS bucket, grouped by owner (the first segment of their id)."""

    def __init__(self, db: AsyncDatabase, bucket: str = EXPORT_BUCKET) -> None:
        self._bucket = AsyncGridFSBucket(db, bucket_name=bucket)
        self._files = db[f"{bucket}.files"]
        self._chunks = db[f"{bucket}.chunks"]

    def writer(self, file_id: str) -> FileWriter:
        """A new file ``file_id`` (``owner/...``); it exists once the writer is closed."""
        return FileWriter(self._bucket.open_upload_stream_with_id(file_id, file_id))

    async def open(self, file_id: str) -> StoredFile | None:
        """The file, or None when there is no (finished) file ``file_id``."""
        try:
            grid_out = await self._bucket.open_download_stream(file_id)
        except NoFile:
            return None
        return StoredFile(grid_out.length, grid_out)

    async def exists(self, file_id: str) -> bool:
        return await self._files.count_documents({"_id": file_id}, limit=1) == 1

    async def remove_owned(self, owner: str, keep: Collection[str] = ()) -> None:
        """Remove every file of ``owner`` (finished or half-written) except those in ``keep``. Chunks go
        before documents: a reader never finds a document whose chunks are half gone for long."""
        prefix = {"$regex": f"^{re.escape(owner)}/"}
        kept = list(keep)
        await self._chunks.delete_many({"files_id": {**prefix, "$nin": kept}})
        await self._files.delete_many({"_id": {**prefix, "$nin": kept}})

    async def remove(self, file_ids: Collection[str]) -> None:
        if file_ids:
            await self._chunks.delete_many({"files_id": {"$in": list(file_ids)}})
            await self._files.delete_many({"_id": {"$in": list(file_ids)}})
