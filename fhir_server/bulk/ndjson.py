"""NDJSON output files (https://github.com/ndjson/ndjson-spec; Bulk Data IG export.html#file-request).

One resource per line, serialized with ``fhirjson.dumps`` (exact decimals). Each type gets files named
``<Type>-<n>.ndjson``; a new file starts every ``max_per_file`` resources, so that no single download is
unbounded. Only one line is held in memory at a time.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from fhir_server import fhirjson
from fhir_server.bulk.jobs import OutputFile

MAX_PER_FILE = 100_000
_BUFFER = 1 << 20
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE_NAME = re.compile(r"^[A-Za-z]+-[0-9]+\.ndjson$")


def job_dir(export_dir: Path, job_id: str) -> Path:
    """The directory of one job's files (``export_dir/<job>``); refuses ids that are not job ids."""
    if not _JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return export_dir / job_id


def is_job_id(name: str) -> bool:
    return bool(_JOB_ID.match(name))


def is_file_name(name: str) -> bool:
    """True for names this module writes (never a path: no separators, no '..')."""
    return bool(_FILE_NAME.match(name))


def remove_job_files(export_dir: Path, job_id: str) -> None:
    shutil.rmtree(job_dir(export_dir, job_id), ignore_errors=True)


class NdjsonWriter:
    """Writes one resource type's files; ``files`` lists them with their counts once closed."""

    def __init__(self, directory: Path, resource_type: str, max_per_file: int = MAX_PER_FILE) -> None:
        self.directory = directory
        self.resource_type = resource_type
        self.max_per_file = max(1, max_per_file)
        self.files: list[OutputFile] = []
        self.total = 0
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> NdjsonWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def write(self, resource: dict[str, Any]) -> None:
        if self._handle is None or self.files[-1].count >= self.max_per_file:
            self._open_next()
        assert self._handle is not None
        self._handle.write(fhirjson.dumps(resource))
        self._handle.write(b"\n")
        self.files[-1].count += 1
        self.total += 1

    def _open_next(self) -> None:
        self._close()
        name = f"{self.resource_type}-{len(self.files) + 1}.ndjson"
        self._handle = open(self.directory / name, "wb", buffering=_BUFFER)  # noqa: SIM115 (closed in _close)
        self.files.append(OutputFile(self.resource_type, name, 0))

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
