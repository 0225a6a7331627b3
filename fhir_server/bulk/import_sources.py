"""Where ``$import`` reads its NDJSON files (Bulk Data Import draft, ping and pull:
https://github.com/smart-on-fhir/bulk-import/blob/master/import-pnp.md, "Data Retrieval Request").

An input is an ``http(s)`` URL, fetched with a streaming GET, or a file on the server's disk: a ``file:`` URL or
a path, which must lie inside ``FHIR_IMPORT_DIR`` once resolved (symbolic links and ``..`` included); with no
such directory configured, no file is read. Plain or gzip-compressed (by the ``.gz`` name, the gzip magic bytes
or ``Content-Encoding: gzip``). Lines are yielded with their 1-based numbers; blank lines are skipped.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from fhir_server.errors import InvalidRequest

_GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 16


def check_input(url: str, import_dir: Path | None) -> None:
    """Refuse (400) an input this server will not read, at kick-off: not http(s), or a file outside the
    configured directory."""
    if urlparse(url).scheme in ("http", "https"):
        return
    local_path(url, import_dir)


def local_path(url: str, import_dir: Path | None) -> Path:
    """The file ``url`` names, inside ``import_dir``; 400 otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        raise InvalidRequest(f"Input '{url}': only http(s) URLs and files under the import directory are read",
                             code="not-supported", expression=("input.url",))
    if import_dir is None:
        raise InvalidRequest(f"Input '{url}': this server reads no files from its disk (FHIR_IMPORT_DIR is unset)",
                             code="security", expression=("input.url",))
    root = import_dir.resolve()
    raw = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
    path = (raw if raw.is_absolute() else root / raw).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InvalidRequest(f"Input '{url}' is outside the import directory", code="security",
                             expression=("input.url",))
    return path


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


async def _http_chunks(url: str, headers: dict[str, str]) -> AsyncIterator[bytes]:
    async with httpx.AsyncClient(timeout=60, follow_redirects=True) as client, \
            client.stream("GET", url, headers={"Accept": "application/fhir+ndjson", **headers}) as response:
        if response.status_code != 200:
            raise OSError(f"GET {url}: HTTP {response.status_code}")
        async for chunk in response.aiter_raw(CHUNK_BYTES):
            yield chunk


async def _decompressed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The bytes as stored, gunzipped when they start with the gzip magic (any number of members)."""
    first = True
    inflater: zlib._Decompress | None = None
    async for chunk in chunks:
        if first:
            first = False
            if chunk.startswith(_GZIP_MAGIC):
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if inflater is None:
            yield chunk
            continue
        while chunk:
            yield inflater.decompress(chunk)
            if inflater.eof:  # a concatenated gzip: the next member starts in the unused data
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                chunk = b""
    if inflater is not None:
        yield inflater.flush()


async def lines(url: str, import_dir: Path | None, headers: dict[str, str] | None = None
                ) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, line) of the NDJSON at ``url``, blank lines skipped."""
    if urlparse(url).scheme in ("http", "https"):
        chunks = _http_chunks(url, headers or {})
    else:
        chunks = _file_chunks(local_path(url, import_dir))
    pending = b""
    number = 0
    async for data in _decompressed(chunks):
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            number += 1
            if line.strip():
                yield number, line
    if pending.strip():
        yield number + 1, pending


def read_local(path: Path) -> bytes:
    """A whole file, gunzipped when it is gzip (the ``load`` command's Bundle files)."""
    data = path.read_bytes()
    return gzip.decompress(data) if data.startswith(_GZIP_MAGIC) else data
