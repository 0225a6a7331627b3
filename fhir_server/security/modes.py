"""``FHIR_AUTH_MODE``: ``smart`` (the default) or ``none``, checked when a server process starts.

``none`` makes every request the full-access system caller: fit for a developer's machine only, so it is
refused unless the server listens on a loopback address, and it is logged as a warning.
"""

from __future__ import annotations

import ipaddress
import logging

from fhir_server.settings import Settings

log = logging.getLogger("fhir_server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_settings(settings: Settings, host: str | None = None) -> None:
    """Raise ``RuntimeError`` for settings a server must not start with; warn about ``none``."""
    host = host or settings.host
    if settings.auth_mode == "none":
        if not is_loopback(host):
            raise RuntimeError(f"FHIR_AUTH_MODE=none lets anyone do anything: refused on {host}, which is not a "
                               "loopback address (use FHIR_AUTH_MODE=smart, the default)")
        log.warning("FHIR_AUTH_MODE=none: every request has full access, without a token (loopback only)")
        return
    if bool(settings.auth_issuer) != bool(settings.auth_jwks_uri):
        raise RuntimeError("FHIR_AUTH_ISSUER and FHIR_AUTH_JWKS_URI go together: set both or neither")
    if settings.oidc_client_id and not settings.auth_issuer:
        raise RuntimeError("FHIR_OIDC_CLIENT_ID signs people in at the identity provider FHIR_AUTH_ISSUER: set it "
                           "(and FHIR_AUTH_JWKS_URI)")
