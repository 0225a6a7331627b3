"""Server configuration, read from the environment (prefix ``FHIR_``); see the README's table."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fhir_server.fhirjson import DEFAULT_LIMITS, JsonLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_", extra="ignore")

    # MongoDB. Without a URI the server starts its own single-node replica set under data_dir.
    mongodb_uri: str | None = None
    mongodb_db: str = "fhir"
    data_dir: Path = Path(".data")
    mongod_port: int = 27117

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str | None = None  # public base, e.g. https://registry.example/fhir; default from the request
    max_body_bytes: int = 16 * 1024 * 1024
    # gzip level of the responses to clients that accept gzip (RFC 9110 12.5.3); 0: never compressed
    gzip_level: int = Field(default=5, ge=0, le=9)
    # Deeper or wider JSON bodies are refused with 400. MongoDB stores at most 180 levels (a resource sits one
    # level down in its document) and the interpreter's stack holds about 1,000: hence the ceiling.
    max_json_depth: int = Field(default=DEFAULT_LIMITS.max_depth, ge=1, le=170)
    max_json_array_items: int = Field(default=DEFAULT_LIMITS.max_array_items, ge=1)
    # One worker per CPU: a worker is one Python process (one core at most), and validation and index extraction
    # are CPU work (issue #14: 2 workers served 918 resources/s where 1 served 555 on 2 cores).
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # Proxies whose Forwarded / X-Forwarded-Proto/Host/Prefix headers give the public base URL (when base_url is
    # unset): comma-separated IPs or CIDRs of the peers allowed to say so; none by default (headers ignored)
    trusted_proxies: str = ""
    # On SIGTERM: stop accepting connections, let in-flight requests finish for at most this long, then stop
    shutdown_timeout_seconds: int = Field(default=30, ge=0)
    # Logs on stderr: one JSON object per line (with the request id) or plain text
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # A request's reads and transactions end within this many seconds; a database unavailable for longer, or a
    # write conflict that outlasts it, is a 503 with Retry-After (well under common EHR client timeouts)
    transaction_timeout_seconds: float = Field(default=30.0, gt=0)

    # Search and paging
    default_count: int = 20
    max_count: int = 1000
    history_default_count: int = 50
    # Bundle.total without _total: matches are counted up to this many (more: no total); 0 counts nothing
    total_budget: int = Field(default=1_000, ge=0)

    # The registry's rule table (profiles/rules.json) enforced on every write; off gives a plain FHIR server
    registry_rules: bool = True
    # The resource types a deployment accepts, comma-separated (e.g. "Patient,Organization,Condition,..."); empty:
    # every R4 type. Writes of other types are refused (404 not-supported) and the CapabilityStatement omits them.
    accepted_types: str = ""
    # Conformance resources loaded at start, and the rule table (rules.json): the repository's profiles/, relative
    # to the working directory (a plain ``pip install .`` does not carry them inside the package)
    profiles_dir: Path = Path("profiles")

    # Bulk export (files are kept in MongoDB GridFS: any node serves them)
    export_ttl_seconds: int = 3600
    # An export whose process died is resumed by another process (its next poll, or the sweep below) at most
    # this many times in all (the first run included); then it fails
    export_max_attempts: int = Field(default=3, ge=1)
    # How often each process looks for exports to resume and expired exports to delete
    job_sweep_seconds: float = Field(default=30.0, gt=0)
    # Bulk import ($import): the only directory on the server's disk whose NDJSON files an import may name (as
    # file: URLs or paths); unset, only http(s) URLs are imported
    import_dir: Path | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        _networks(value)  # a typo must stop the server at start, not silently trust nobody (or everybody)
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.trusted_proxies)

    # Authentication (SMART Backend Services; README "Authentication"). ``none``: every request is the full-access
    # system caller, refused at start unless the server listens on a loopback address
    auth_mode: Literal["smart", "none"] = "smart"
    clients_file: Path | None = None  # the registered clients; default: data_dir / "clients.json"
    # An external OAuth2/OIDC identity provider whose access tokens are accepted too (both needed)
    auth_issuer: str | None = None
    auth_jwks_uri: str | None = None
    auth_audience: str | None = None  # the ``aud`` its tokens carry; default: the FHIR base URL
    auth_role_claim: str = "fhir_role"  # claim holding the role (a dotted path into nested claims)
    auth_center_claim: str = "fhir_center"  # claim holding an ``ehr`` caller's center code
    # Lifetime of the access tokens this server issues (SMART: at most five minutes)
    token_lifetime_seconds: int = Field(default=300, ge=1, le=300)
    # People sign in to the pages (/report; README "Signing in to the pages"): with FHIR_AUTH_ISSUER and a client
    # id registered at that identity provider, by OpenID Connect (authorization code with PKCE)
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None  # unset: a public client (PKCE only)
    oidc_scope: str = "openid profile"
    session_lifetime_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)  # a page session's life

    # The audit trail (README, "Audit trail"): reads' events are written in batches of this many, or after this long
    audit_enabled: bool = True  # false only to measure what auditing costs
    audit_batch_size: int = Field(default=200, ge=1)
    audit_flush_ms: int = Field(default=500, ge=1)
    audit_source: str = "ifp-fhir"  # this server as the AuditEvents' observer (source.observer); name each node
    # Who writes the reads' events: a process of its own per server process (``process``), or the server's event
    # loop (``loop``: one process fewer, but a search's p95 pays the writer's work, bench/README.md)
    audit_writer: Literal["process", "loop"] = "process"

    @property
    def clients_path(self) -> Path:
        return self.clients_file or self.data_dir / "clients.json"

    @property
    def accepted_type_set(self) -> frozenset[str]:
        """The types of ``accepted_types`` (empty: no restriction)."""
        return frozenset(t.strip() for t in self.accepted_types.split(",") if t.strip())

    @property
    def json_limits(self) -> JsonLimits:
        return JsonLimits(self.max_json_depth, self.max_json_array_items)


@lru_cache(maxsize=8)  # read for every request's base URL
def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> the networks (a bare address is a network of one)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
