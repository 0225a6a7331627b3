"""The composition root: what a server process builds once at start-up, in order.

Only the entry points import this module (``api.app``'s lifespan, the test fixtures, the benchmarks): it knows
every operation module, while everything else depends on the narrow ``Services`` container
(``fhir_server.services``). The layers are a checked contract (``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fhir_server import cohorts
from fhir_server.bulk import import_operation as bulk_import
from fhir_server.bulk import operation as bulk_export
from fhir_server.conformance import ConformanceCache
from fhir_server.interactions import everything, lastn, meta, meta_changes, reindex, risk, terminology_ops, validate
from fhir_server.interactions import match as patient_match
from fhir_server.interactions import versions as fhir_versions
from fhir_server.interactions.enforcement import WriteCheck
from fhir_server.operations import OperationRegistry
from fhir_server.profiles_loader import load_profiles
from fhir_server.reports import operation as registry_report
from fhir_server.reports.pipeline import ROW_DEFINITION
from fhir_server.resources import AUDIT_EVENT, CONFORMANCE_TYPES, REGISTRY_TYPES, SUPPORTED_TYPES
from fhir_server.search import audit_values
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.security.authority import Authority
from fhir_server.services import Services
from fhir_server.settings import Settings
from fhir_server.storage.audit_process import ProcessIndex
from fhir_server.storage.store import IndexSpecs, ResourceStore
from fhir_server.validation.rules import load_rules

log = logging.getLogger(__name__)


async def start_services(settings: Settings, uri: str) -> Services:
    """Connect, create the indexes, give old documents their center, read the clients file, register the
    operations and write checks, load ``profiles/``."""
    unknown = sorted(settings.accepted_type_set - set(SUPPORTED_TYPES))
    if unknown:
        raise RuntimeError(f"FHIR_ACCEPTED_TYPES names types that are not R4 resource types: {', '.join(unknown)}")
    rules = rule_table(settings.profiles_dir, settings.registry_rules)
    store = ResourceStore.open(uri, settings.mongodb_db, timeout_seconds=settings.transaction_timeout_seconds)
    services = Services(settings, store, SearchParameterRegistry.load_default(), ConformanceCache(store),
                        rules=rules, write_checks=write_checks())
    if settings.audit_enabled:
        process = ProcessIndex(audit_values.default_index, lambda event: audit_values.applies(
            services.search_parameters, event)) if settings.audit_writer == "process" else None
        services.audit_log = store.audit_log(services.index_values, batch_size=settings.audit_batch_size,
                                             interval=settings.audit_flush_ms / 1000, process=process)
    await services.reload_search_parameters()
    # The registry's, the conformance types and the audit trail at once, the other R4 types when first written to.
    await store.ensure_indexes(search_indexes(services.search_parameters),
                               eager=(*REGISTRY_TYPES, *CONFORMANCE_TYPES, AUDIT_EVENT))
    migrated = await store.assign_missing_centers(SUPPORTED_TYPES)
    if migrated:
        log.warning("%d resources stored before centers existed were given their center", migrated)
    await keep_report_rows(store, rebuild=bool(migrated))
    await store.security().ensure_indexes()
    if settings.auth_mode == "smart":  # reads the clients file: a malformed one stops the start here
        services.authority = Authority(settings, store.security())
    register_operations(services.operations)
    await load_profiles(services)
    return services


async def keep_report_rows(store: ResourceStore, rebuild: bool = False) -> None:
    """Every write keeps the registry report's per-patient rows (``storage/report_rows.py``); rows of no or of
    another definition (a new database, data loaded around the server, a changed report) are rebuilt first."""
    store.report_rows.keep(ROW_DEFINITION)
    if await store.report_rows.ensure_built(rebuild):
        rows = await store.report_rows.count()
        # a new, empty database has nothing to rebuild: a warning there would be noise on every first start
        log.log(logging.WARNING if rows else logging.INFO,
                "Rebuilt the registry report's per-patient rows: %d patients", rows)


async def rebuild_rows(uri: str, database: str) -> int:
    """``fhir-server rebuild-report-rows``: rebuild the rows of ``database``; how many patients have one."""
    store = ResourceStore.open(uri, database)
    try:
        store.report_rows.keep(ROW_DEFINITION)
        await store.report_rows.rebuild()
        return await store.report_rows.count()
    finally:
        await store.close()


def register_operations(registry: OperationRegistry) -> None:
    """Every FHIR operation the server offers, registered in one place (the routes and the CapabilityStatement
    are generated from the registry); each operation module contributes its OperationSpec(s)."""
    for module in (validate, terminology_ops, risk, everything, lastn, meta, meta_changes, reindex, registry_report,
                   bulk_export, cohorts, bulk_import, fhir_versions, patient_match):
        module.register(registry)


def write_checks() -> list[WriteCheck]:
    """Checks run on every validated write besides profiles: refuse unusable SearchParameters before they are
    stored; warn when a submitted risk score disagrees with the one computed from the patient's data."""
    return [reindex.check_search_parameter, risk.check_submitted_score]


def rule_table(profiles_dir: Path, enforced: bool) -> list[dict[str, Any]]:
    """The registry's rule table. Without it a server meant to enforce it refuses to start (it would accept
    anything silently); a plain FHIR server (FHIR_REGISTRY_RULES=false) only warns."""
    path = profiles_dir / "rules.json"
    if not path.is_file():
        if enforced:
            raise RuntimeError(f"No rule table at {path.resolve()}: start the server in the repository's folder "
                               "or set FHIR_PROFILES_DIR to its profiles/ (FHIR_REGISTRY_RULES=false: no rules)")
        log.warning("No rule table at %s: no profile is required of any resource (set FHIR_PROFILES_DIR)", path)
        return []
    return load_rules(path)


def search_indexes(registry: SearchParameterRegistry) -> IndexSpecs:
    """The search indexes of every resource collection, as the registry declares them, and the audit trail's."""
    indexes: IndexSpecs = {kind: [(keys, registry.index_options(keys)) for keys in registry.index_specs(kind)]
                           for kind in SUPPORTED_TYPES}
    indexes[AUDIT_EVENT] = [(list(keys), {}) for keys in audit_values.INDEX_SPECS]
    return indexes
