"""``fhir-server load FILE|DIR [--url URL] [--errors FILE]``: load FHIR data into a running server over HTTP.

Files: NDJSON (``.ndjson``, ``.jsonl``: one resource per line, as a Bulk Data ``$export`` writes them), Bundle
JSON (``.json``) and FHIR XML (``.xml``, a Bundle or one resource, https://hl7.org/fhir/R4/xml.html: read into
JSON by ``xml_format`` and sent as JSON), plain or gzipped (``.gz``); a directory: every such file in it, in name
order. A ``transaction`` Bundle is posted as it is (all or nothing, https://hl7.org/fhir/R4/http.html#transaction),
a ``batch`` Bundle as it is (each entry on its own); the resources of NDJSON lines and of ``collection`` Bundles are
sent in batch Bundles of ``--chunk`` entries, each a ``PUT Type/id`` when the resource has an id (the id is kept:
an export loads back as it was, and loading it again stores no new version) or a ``POST Type`` when it has none.
So every resource goes through the server's one write path: validated exactly as a create or update of its own,
conditional semantics and the center rules kept. A chunk goes first as a ``transaction`` Bundle (stored at once);
only when the server refuses it does it go again as a ``batch`` (each entry on its own), for the failing lines.
Authentication as ``import-csv`` (``--client``, ``--key``).

``--jobs N`` (default: the CPU count) posts up to N chunks of a file at once, so that a server with several
workers uses them all; a file is finished before the next starts, so files are stored in name order as with one
job (resources in a file that refer to each other may be stored in any order, as in a batch Bundle).

A progress line on stderr (a few a second at most, with the rate); at the end, every failed line (file, line
number or Bundle entry, the OperationOutcome's issues) is written to ``--errors`` (default stderr), one
tab-separated line each, in file and line order. Exit status
0 when everything was stored, 1 when a line failed, 2 when a file or the server could not be used. For the
fastest load of large files, the server pulls them with ``$import`` (README "Loading data").
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fhir_server import fhirjson
from fhir_server.auth_commands import DEFAULT_URL, add_client_arguments, client_key_path
from fhir_server.cli import command
from fhir_server.errors import FhirError
from fhir_server.settings import Settings
from fhir_server.xml_format import resource_from_xml

SUFFIXES = (".ndjson", ".jsonl", ".json", ".xml")
CHUNK = 100
FHIR_JSON = "application/fhir+json"


@dataclass
class Failure:
    file: Path
    where: str  # "line 12" or "entry 3" (1-based) or "Bundle"
    issues: str


@dataclass
class Tally:
    stored: int = 0
    failed: int = 0


def loadable(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return path.is_file() and name.endswith(SUFFIXES)


def files_of(target: Path) -> list[Path]:
    """``target`` itself, or every loadable file of the directory, in name order."""
    if target.is_dir():
        return sorted(p for p in target.iterdir() if loadable(p))
    return [target]


def read_bytes(path: Path) -> bytes:
    import gzip

    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def is_ndjson(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith((".ndjson", ".jsonl"))


def is_xml(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith(".xml")


def issues_text(outcome: Any, status: str = "") -> str:
    """``severity code: diagnostics (expression)`` of each issue of an OperationOutcome."""
    issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
    parts = [f"{i.get('severity')} {i.get('code')}: {i.get('diagnostics', '')}"
             + (f" ({', '.join(i['expression'])})" if i.get("expression") else "") for i in issues]
    return "; ".join(parts) or status or "failed"


def entry_of(resource: dict[str, Any]) -> dict[str, Any]:
    """The batch entry that loads ``resource``: PUT with its id, POST without."""
    kind, ident = resource.get("resourceType"), resource.get("id")
    request = {"method": "PUT", "url": f"{kind}/{ident}"} if ident else {"method": "POST", "url": str(kind)}
    return {"resource": resource, "request": request}


class Loader:
    """Posts what the files hold and keeps the tally and the failures."""

    def __init__(self, http: Any, url: str, chunk: int, out: TextIO, jobs: int = 1) -> None:
        self.http = http  # an httpx.Client: thread-safe, one connection per job
        self.url = url
        self.chunk = max(1, chunk)
        self.out = out
        self.jobs = max(1, jobs)
        self.tally = Tally()
        self.failures: list[Failure] = []
        self._lock = threading.Lock()  # the tally and the failures, shared by the jobs
        self._started = time.monotonic()
        self._shown = 0.0

    def fail(self, file: Path, where: str, issues: str) -> None:
        with self._lock:
            self.tally.failed += 1
            self.failures.append(Failure(file, where, issues))

    def stored(self, count: int) -> None:
        with self._lock:
            self.tally.stored += count

    def post(self, bundle: dict[str, Any]) -> tuple[int, Any]:
        response = self.http.post(self.url, content=fhirjson.dumps(bundle),
                                  headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        try:
            return response.status_code, fhirjson.loads(response.content)
        except FhirError:
            return response.status_code, None

    def load_file(self, path: Path) -> None:
        data = read_bytes(path)
        if is_ndjson(path):
            self.load_items(path, self.ndjson_items(path, data))
            return
        try:
            bundle = resource_from_xml(data) if is_xml(path) else fhirjson.loads(data)
        except FhirError as exc:
            self.fail(path, "file", issues_text(exc.outcome()))
            return
        kind = bundle.get("type") if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle" else None
        if kind in ("transaction", "batch"):
            self.post_bundle(path, bundle)
        elif kind is not None:
            entries = bundle.get("entry") or []
            self.load_items(path, ((f"entry {n}", e.get("resource") if isinstance(e, dict) else None)
                                   for n, e in enumerate(entries, 1)))
        else:
            self.load_items(path, iter([("resource", bundle)]))

    def ndjson_items(self, path: Path, data: bytes) -> Iterator[tuple[str, Any]]:
        for number, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", fhirjson.loads(line)
            except FhirError as exc:
                self.fail(path, f"line {number}", issues_text(exc.outcome()))

    def chunks(self, path: Path, items: Iterator[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
        chunk: list[tuple[str, Any]] = []
        for where, resource in items:
            if not isinstance(resource, dict) or "resourceType" not in resource:
                self.fail(path, where, "error structure: not a FHIR resource")
                continue
            chunk.append((where, resource))
            if len(chunk) >= self.chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def load_items(self, path: Path, items: Iterator[tuple[str, Any]]) -> None:
        """Send the chunks, up to ``jobs`` at a time (2 x jobs queued: memory stays bounded); return when the
        whole file is stored."""
        if self.jobs == 1:
            for chunk in self.chunks(path, items):
                self.send_chunk(path, chunk)
            return
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="load") as pool:
            pending: deque[Future[None]] = deque()
            for chunk in self.chunks(path, items):
                pending.append(pool.submit(self.send_chunk, path, chunk))
                while len(pending) >= 2 * self.jobs:
                    pending.popleft().result()
            for future in pending:
                future.result()

    def send_chunk(self, path: Path, chunk: list[tuple[str, Any]]) -> None:
        """The chunk as one ``transaction`` Bundle: stored at once, in one MongoDB transaction (a ``batch`` runs a
        transaction per entry, each with its own lookups, report rows and AuditEvent: ~13x slower, bench/README
        "fhir-server load"). When the server refuses it (a line it rejects, a conflict), nothing of it was
        stored and the chunk goes again as a ``batch``, whose per-entry outcomes name the failing lines."""
        sent = [entry_of(resource) for _, resource in chunk]
        status, answer = self.post({"resourceType": "Bundle", "type": "transaction", "entry": sent})
        if status == 200 and isinstance(answer, dict) and len(answer.get("entry") or []) == len(chunk):
            self.stored(len(chunk))
            self.progress(path)
            return
        status, answer = self.post({"resourceType": "Bundle", "type": "batch", "entry": sent})
        entries = answer.get("entry") if status == 200 and isinstance(answer, dict) else None
        if not isinstance(entries, list) or len(entries) != len(chunk):
            for where, _ in chunk:
                self.fail(path, where, issues_text(answer, f"HTTP {status}"))
            return
        stored = 0
        for (where, _), entry in zip(chunk, entries, strict=True):
            response = entry.get("response", {})
            if str(response.get("status", "")).startswith("2"):
                stored += 1
            else:
                self.fail(path, where, issues_text(response.get("outcome"), str(response.get("status"))))
        self.stored(stored)
        self.progress(path)

    def post_bundle(self, path: Path, bundle: dict[str, Any]) -> None:
        status, answer = self.post(bundle)
        if status != 200 or not isinstance(answer, dict):
            self.fail(path, "Bundle", issues_text(answer, f"HTTP {status}"))
            return
        for number, entry in enumerate(answer.get("entry") or [], 1):
            response = entry.get("response", {})
            if str(response.get("status", "")).startswith("2"):
                self.stored(1)
            else:
                self.fail(path, f"entry {number}", issues_text(response.get("outcome"), str(response.get("status"))))
        self.progress(path)

    def progress(self, path: Path, *, every: float = 0.25) -> None:
        """The progress line, at most every ``every`` seconds (a line per chunk would cost a terminal's time)."""
        now = time.monotonic()
        with self._lock:
            if now - self._shown < every:
                return
            self._shown = now
            rate = self.tally.stored / max(now - self._started, 1e-9)
            self.out.write(f"\r{path.name}: {self.tally.stored} stored, {self.tally.failed} failed, "
                           f"{rate:.0f} resources/s")
            self.out.flush()


def write_report(loader: Loader, report: TextIO, out: TextIO) -> None:
    seconds = time.monotonic() - loader._started
    out.write(f"\n{loader.tally.stored} resources stored, {loader.tally.failed} failed in {seconds:.1f} s\n")
    if loader.failures:
        report.write("file\twhere\tissues\n")
        for f in sorted(loader.failures, key=_position):  # in file order, whatever job finished first
            report.write(f"{f.file}\t{f.where}\t{f.issues}\n")


def _position(failure: Failure) -> tuple[str, str, int]:
    """Sort key: the file, then the line or entry number (``line 12``), then anything else."""
    kind, _, number = failure.where.partition(" ")
    return str(failure.file), kind, int(number) if number.isdigit() else 0


def run_load(target: Path, url: str, *, auth: Any = None, chunk: int = CHUNK, errors: Path | None = None,
             out: TextIO | None = None, jobs: int = 1) -> int:
    """Load ``target`` into the server at ``url``; the exit status."""
    import httpx

    out = out or sys.stderr
    if not target.exists():
        out.write(f"cannot load {target}: no such file or directory\n")
        return 2
    with httpx.Client(timeout=120, auth=auth) as http:
        loader = Loader(http, url, chunk, out, jobs)
        try:
            for path in files_of(target):
                loader.load_file(path)
        except (OSError, httpx.HTTPError) as exc:
            out.write(f"\ncannot load {target}: {exc}\n")
            return 2
    if errors is None:
        write_report(loader, out, out)
    else:
        with errors.open("w", encoding="utf-8") as report:
            write_report(loader, report, out)
    return 1 if loader.tally.failed else 0


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, help="an NDJSON or Bundle JSON file (plain or .gz), or a directory")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the FHIR base (default {DEFAULT_URL})")
    parser.add_argument("--errors", type=Path, default=None, help="write the per-line error report here")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"resources per request (default {CHUNK})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="requests at once (default: the CPU count)")
    add_client_arguments(parser)


@command("load", _args)
def load(args: argparse.Namespace, settings: Settings) -> int:
    """Load NDJSON and Bundle files (plain or gzipped) into a running server, with a per-line error report."""
    from fhir_server.security.client import BackendServicesAuth
    from fhir_server.security.registration import load_private_key

    url = args.url.rstrip("/")
    path = client_key_path(args, settings)
    auth = BackendServicesAuth(url, args.client, load_private_key(path)) if path.exists() else None
    return run_load(args.target, url, auth=auth, chunk=args.chunk, errors=args.errors, jobs=args.jobs)
