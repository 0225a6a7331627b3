"""Files kept in MongoDB GridFS (https://www.mongodb.com/docs/manual/core/gridfs/): bulk export output, so that
any server node serves any export's files and nothing lives on a node's disk.

A file's id is a string ``<owner>/<rest>`` (an export: ``<job>/<attempt>/<Type>-<n>.ndjson``): everything one
owner wrote, finished or not, is found by that prefix, in ``<bucket>.files`` and in ``<bucket>.chunks`` alike
(GridFS writes a file's document only when it is closed, so the chunks of a file whose writer died have no
document). A writer holds a few chunks (255 kB each) in memory, a reader one chunk at a time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from bson.int64 import Int64
from gridfs import DEFAULT_CHUNK_SIZE, AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

EXPORT_BUCKET = "export"
CHUNK_BYTES = DEFAULT_CHUNK_SIZE  # GridFS's default, 255 kB: what the driver's reader expects of most files
BUFFER_CHUNKS = 4  # chunks a writer holds before it inserts them: about 1 MB, one round trip per MB


class FileWriter:
    """One file being written (``async with``): closed, it exists; on an exception it is aborted (its chunks go).

    It writes the GridFS format itself (chunk documents ``{files_id, n, data}`` of ``chunk_bytes``, then the
    file document on close) instead of through the driver's ``AsyncGridIn``, which keeps every chunk document
    of a file in memory until 48 MB (``_UPLOAD_BUFFER_SIZE``) before one ``insert_many``: an export's peak
    memory grew with its largest file. Here each full buffer goes out as its own chunk documents, so a writer
    holds at most ``buffer_chunks`` chunks (about 1 MB) whatever the file's size."""

    def __init__(self, files: AsyncCollection[Any], chunks: AsyncCollection[Any], file_id: str, *,
                 ready: Callable[[], Awaitable[None]], chunk_bytes: int = CHUNK_BYTES,
                 buffer_chunks: int = BUFFER_CHUNKS) -> None:
        self._ready = ready  # the bucket's indexes, before the first write
        self._files = files
        self._chunks = chunks
        self.file_id = file_id
        self._chunk_bytes = chunk_bytes
        self._limit = chunk_bytes * buffer_chunks
        self._buffer = bytearray()
        self._next_chunk = 0
        self.length = 0

    async def write(self, data: bytes) -> None:
        """Buffered: one round trip per ``buffer_chunks`` chunks, not per line."""
        self._buffer += data
        self.length += len(data)
        if len(self._buffer) >= self._limit:
            await self._flush(whole_chunks_only=True)

    async def close(self) -> None:
        """Write the rest (the last, shorter chunk) and then the file document: from now on the file exists."""
        await self._flush(whole_chunks_only=False)
        await self._files.insert_one({"_id": self.file_id, "filename": self.file_id, "length": Int64(self.length),
                                      "chunkSize": self._chunk_bytes, "uploadDate": datetime.now(UTC)})

    async def abort(self) -> None:
        self._buffer.clear()
        await self._chunks.delete_many({"files_id": self.file_id})
        await self._files.delete_one({"_id": self.file_id})

    async def _flush(self, *, whole_chunks_only: bool) -> None:
        """Insert the buffer as chunk documents (only the full chunks when more data may follow)."""
        size = self._chunk_bytes
        end = len(self._buffer) - len(self._buffer) % size if whole_chunks_only else len(self._buffer)
        await self._ready()
        docs = []
        for start in range(0, end, size):
            docs.append({"files_id": self.file_id, "n": self._next_chunk,
                         "data": bytes(self._buffer[start:min(start + size, end)])})
            self._next_chunk += 1
        if docs:
            await self._chunks.insert_many(docs, ordered=True)
        del self._buffer[:end]

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
        self._indexed = False

    def writer(self, file_id: str) -> FileWriter:
        """A new file ``file_id`` (``owner/...``); it exists once the writer is closed."""
        return FileWriter(self._files, self._chunks, file_id, ready=self._ensure_indexes, chunk_bytes=CHUNK_BYTES,
                          buffer_chunks=BUFFER_CHUNKS)

    async def _ensure_indexes(self) -> None:
        """The GridFS spec's indexes (what the driver's writer creates): chunks by (file, n), unique, which
        every read uses and which makes two writers of one file fail; files by (filename, uploadDate)."""
        if not self._indexed:
            await self._chunks.create_index([("files_id", 1), ("n", 1)], unique=True)
            await self._files.create_index([("filename", 1), ("uploadDate", 1)])
            self._indexed = True

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
