"""The ``fhir-server`` command: ``serve`` (and, with later modules, ``import-csv``)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable

from fhir_server.logs import configure as configure_logging
from fhir_server.settings import Settings, get_settings

Command = Callable[[argparse.Namespace, Settings], int]
_COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = (fn, configure)
        return fn
    return register


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default FHIR_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default FHIR_PORT or 8080)")
    parser.add_argument("--workers", type=int, default=None, help="uvicorn worker processes")


@command("serve", _serve_args)
def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve http://HOST:PORT/fhir; start a local mongod unless FHIR_MONGODB_URI is set."""
    import uvicorn

    from fhir_server.bootstrap import rule_table
    from fhir_server.security.clients import ClientsFileError, read_clients
    from fhir_server.security.modes import check_auth_settings
    from fhir_server.security.registration import ensure_dev_admin
    from fhir_server.storage.mongod import LocalMongod

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    try:  # what would stop every worker's start, told once before MongoDB starts
        check_auth_settings(settings, host)
        dev_admin_key = ensure_dev_admin(settings)
        if settings.auth_mode == "smart" and settings.clients_path.exists():
            read_clients(settings.clients_path)
        # a worker that fails its start stops uvicorn's supervisor with exit status 0 (several workers are the
        # default): what the workers would refuse is checked here, so a misconfigured server exits non-zero
        rule_table(settings.profiles_dir, settings.registry_rules)
    except (RuntimeError, ClientsFileError) as exc:
        print(f"fhir-server: {exc}", file=sys.stderr)
        return 2
    if dev_admin_key is not None:
        print(f"First start: registered the client dev-admin (role admin) in {settings.clients_path}, its key in "
              f"{dev_admin_key}; `fhir-server token` prints a token for it")
    os.environ["FHIR_HOST"] = host  # the workers check FHIR_AUTH_MODE=none against the address really bound
    mongod: LocalMongod | None = None
    if not settings.mongodb_uri:
        mongod = LocalMongod(settings.data_dir.resolve(), settings.mongod_port)
        print(f"Starting MongoDB (replica set) under {settings.data_dir}/ on port {settings.mongod_port} ...")
        mongod.start()
        os.environ["FHIR_MONGODB_URI"] = mongod.uri
        get_settings.cache_clear()
    print(f"FHIR server on http://{host}:{port}/fhir  (Ctrl-C to stop)")
    configure_logging(settings.log_level, settings.log_format)
    metrics_dir = _share_metrics_between_workers() if workers > 1 else None
    try:
        # proxy_headers=False: the app alone decides whom to believe (FHIR_TRUSTED_PROXIES, api/forwarded.py);
        # log_config=None: the JSON logging configured here (and by each worker's app_factory) stays;
        # date_header=False: the app dates each response itself (api/observability.py).
        uvicorn.run("fhir_server.api.app:app_factory", factory=True, host=host, port=port, workers=workers,
                    log_level=settings.log_level.lower(), access_log=False, log_config=None, proxy_headers=False,
                    date_header=False, timeout_graceful_shutdown=settings.shutdown_timeout_seconds)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if mongod is not None:
            print("Stopping MongoDB ...")
            mongod.stop()
    return 0


def _share_metrics_between_workers() -> str | None:
    """Prometheus multiprocess mode: the worker processes (spawned after this) keep their metrics in files
    of one fresh directory, which ``/metrics`` of any worker adds up. The directory made here (removed when
    the server stops), or None when the operator named one."""
    from fhir_server.metrics import MULTIPROCESS_DIR_VARIABLE

    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        return None
    os.environ[MULTIPROCESS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="ifp-fhir-metrics-")
    return os.environ[MULTIPROCESS_DIR_VARIABLE]


@command("rebuild-report-rows", lambda parser: None)
def rebuild_report_rows(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the registry report's per-patient rows from the stored resources (after a raw load or a restore).

    The server keeps the rows at every write and rebuilds them at start when they are missing; data written
    around it while it runs needs this (FHIR_MONGODB_URI, FHIR_MONGODB_DB)."""
    import asyncio

    from fhir_server.bootstrap import rebuild_rows

    if not settings.mongodb_uri:
        print("fhir-server: rebuild-report-rows needs FHIR_MONGODB_URI", file=sys.stderr)
        return 2
    count = asyncio.run(rebuild_rows(settings.mongodb_uri, settings.mongodb_db))
    print(f"Rebuilt the report rows of {count} patients")
    return 0


def _load_plugins() -> None:
    """Modules that add sub-commands register them on import."""
    import importlib

    for module in ("fhir_server.legacy_import", "fhir_server.load_command", "fhir_server.auth_commands"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown progress output
    _load_plugins()
    parser = argparse.ArgumentParser(prog="fhir-server", description="IFP registry FHIR R4 server")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, configure) in _COMMANDS.items():
        configure(sub.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0]))
    args = parser.parse_args(argv)
    fn, _ = _COMMANDS[args.command]
    return fn(args, get_settings())


if __name__ == "__main__":
    sys.exit(main())
