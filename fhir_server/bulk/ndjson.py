"""NDJSON output files (https://github.com/ndjson/ndjson-spec; Bulk Data IG export.html#file-request), kept in
MongoDB GridFS (``storage/files.py``) so that any server node serves them.

One resource per line, serialized with ``fhirjson.dumps`` (exact decimals). Each type gets files named
``<Type>-<n>.ndjson``; a new file starts every ``max_per_file`` resources, so that no single download is
unbounded. A file's GridFS id is ``<job>/<attempt>/<name>``: the files of a job are found (and removed) by its
id, and two processes that ran the same job one after the other (a takeover) never write the same file.
Memory holds one buffer (about 1 MB) of lines at a time (`storage/files.py` `FileWriter`).
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

from fhir_server import fhirjson
from fhir_server.bulk.jobs import OutputFile
from fhir_server.storage.files import FileStore, FileWriter

MAX_PER_FILE = 100_000
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE_NAME = re.compile(r"^[A-Za-z]+-[0-9]+\.ndjson$")


def is_job_id(name: str) -> bool:
    return bool(_JOB_ID.match(name))


def is_file_name(name: str) -> bool:
    """True for names this module writes (never a path: no separators, no '..')."""
    return bool(_FILE_NAME.match(name))


def file_id(job_id: str, output: OutputFile) -> str:
    """The GridFS id of one output file of ``job_id``."""
    if not is_job_id(job_id) or not is_file_name(output.name):
        raise ValueError(f"not an export file: {job_id!r} {output.name!r}")
    return f"{job_id}/{output.attempt}/{output.name}"


async def remove_job_files(files: FileStore, job_id: str, keep: list[OutputFile] | None = None) -> None:
    """Remove the files of ``job_id``, finished or half-written, except ``keep`` (the finished types' files a
    resumed job keeps)."""
    await files.remove_owned(job_id, [file_id(job_id, o) for o in keep or []])


class NdjsonWriter:
    """Writes one resource type's files (``async with``); ``files`` lists them with their counts. On an
    exception the file being written is aborted; the finished ones are the caller's to remove."""

    def __init__(self, files: FileStore, job_id: str, attempt: int, resource_type: str,
                 max_per_file: int = MAX_PER_FILE, *, stem: str | None = None) -> None:
        self._store = files
        self.job_id = job_id
        self.attempt = attempt
        self.resource_type = resource_type
        self.stem = stem or resource_type  # the files' names: ``<stem>-<n>.ndjson``
        self.max_per_file = max(1, max_per_file)
        self.files: list[OutputFile] = []
        self.total = 0
        self._current: FileWriter | None = None

    async def __aenter__(self) -> NdjsonWriter:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        if exc is None:
            await current.close()
        else:
            await current.abort()

    async def write(self, resource: dict[str, Any]) -> None:
        if self._current is None or self.files[-1].count >= self.max_per_file:
            await self._open_next()
        assert self._current is not None
        await self._current.write(fhirjson.dumps(resource) + b"\n")
        self.files[-1].count += 1
        self.total += 1

    async def _open_next(self) -> None:
        if self._current is not None:
            await self._current.close()
        output = OutputFile(self.resource_type, f"{self.stem}-{len(self.files) + 1}.ndjson", 0, self.attempt)
        self._current = self._store.writer(file_id(self.job_id, output))
        self.files.append(output)
