"""Server configuration, read from the environment (prefix ``FHIR_``); see the README's table."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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
    # Deeper or wider JSON bodies are refused with 400. MongoDB stores at most 180 levels (a resource sits one
    # level down in its document) and the interpreter's stack holds about 1,000: hence the ceiling.
    max_json_depth: int = Field(default=DEFAULT_LIMITS.max_depth, ge=1, le=170)
    max_json_array_items: int = Field(default=DEFAULT_LIMITS.max_array_items, ge=1)
    workers: int = 1

    # Search and paging
    default_count: int = 20
    max_count: int = 1000
    history_default_count: int = 50
    # Bundle.total without _total: matches are counted up to this many (more: no total); 0 counts nothing
    total_budget: int = Field(default=10_000, ge=0)

    # The registry's rule table (profiles/rules.json) enforced on every write; off gives a plain FHIR server
    registry_rules: bool = True
    # The resource types a deployment accepts, comma-separated (e.g. "Patient,Organization,Condition,..."); empty:
    # every R4 type. Writes of other types are refused (404 not-supported) and the CapabilityStatement omits them.
    accepted_types: str = ""
    # Conformance resources loaded at start, and the rule table (rules.json): the repository's profiles/, relative
    # to the working directory (a plain ``pip install .`` does not carry them inside the package)
    profiles_dir: Path = Path("profiles")

    # Bulk export
    export_dir: Path = Path(".data/export")
    export_ttl_seconds: int = 3600

    @property
    def accepted_type_set(self) -> frozenset[str]:
        """The types of ``accepted_types`` (empty: no restriction)."""
        return frozenset(t.strip() for t in self.accepted_types.split(",") if t.strip())

    @property
    def json_limits(self) -> JsonLimits:
        return JsonLimits(self.max_json_depth, self.max_json_array_items)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
