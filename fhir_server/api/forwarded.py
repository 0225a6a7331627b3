"""The public base URL of a request behind reverse proxies: ``Forwarded`` (RFC 7239) or ``X-Forwarded-Proto``,
``X-Forwarded-Host`` and ``X-Forwarded-Prefix``, believed only from trusted proxies (``FHIR_TRUSTED_PROXIES``).

Anyone can send these headers; a server that believed them from any peer would write an attacker's host into
``Location``, ``fullUrl`` and paging links. So they count only when the TCP peer is a trusted proxy. In a
``Forwarded`` list each proxy appends its element: the peer's is the last one; walking leftwards, an element
counts while the proxy that appended the one to its right (its ``for=``) is trusted too (RFC 7239 section 5.2:
the first proxy's element holds the client's proto and host). The ``X-Forwarded-*`` headers have no such
chain: their last value (the trusted peer's) counts. ``Forwarded`` wins over ``X-Forwarded-Proto/Host`` when
present; a malformed value is ignored (the request's own is used), never half-applied.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")
_PROTOS = ("http", "https")


def public_base_url(request: Request, trusted: Sequence[Network]) -> str:
    """``scheme://host[/prefix]`` of the server as the client addressed it (no trailing slash)."""
    own = str(request.base_url).rstrip("/")
    if not trusted or not _is_trusted(request.client.host if request.client else None, trusted):
        return own
    proto, host = _from_forwarded(request.headers.getlist("forwarded"), trusted)
    if proto is None and host is None:
        proto = _last(request.headers.get("x-forwarded-proto"))
        host = _last(request.headers.get("x-forwarded-host"))
    prefix = _last(request.headers.get("x-forwarded-prefix")) or ""
    proto = proto.lower() if proto and proto.lower() in _PROTOS else request.url.scheme
    host = host if host and _HOST.match(host) else request.headers.get("host") or request.url.netloc
    prefix = prefix.rstrip("/") if _PREFIX.match(prefix) else ""
    return f"{proto}://{host}{prefix}{request.scope.get('root_path', '')}".rstrip("/")


def client_address(request: Request, trusted: Sequence[Network]) -> str | None:
    """The client's address (its AuditEvents' ``agent.network``): the TCP peer's, or behind trusted proxies the
    nearest hop they name that is not itself a trusted proxy (``Forwarded: for=``, else ``X-Forwarded-For``)."""
    peer = request.client.host if request.client else None
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = [_pairs(element) for value in request.headers.getlist("forwarded") for element in value.split(",")]
    if forwarded:
        hops = [_node_address(element.get("for")) for element in forwarded]
    else:
        hops = [hop.strip() for hop in (request.headers.get("x-forwarded-for") or "").split(",") if hop.strip()]
    for hop in reversed(hops):  # each proxy appended the address it saw: walk back while it is a trusted proxy
        if not _is_trusted(hop, trusted):
            return hop or peer  # an obfuscated node ("unknown"): the peer is what is known
    return hops[0] if hops and hops[0] else peer


def _is_trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _last(value: str | None) -> str | None:
    """The last of a comma-separated header value (the one the trusted peer added)."""
    if not value:
        return None
    return value.split(",")[-1].strip() or None


def _from_forwarded(values: list[str], trusted: Sequence[Network]) -> tuple[str | None, str | None]:
    """(proto, host) of the ``Forwarded`` element the client-facing trusted proxy appended."""
    elements = [_pairs(element) for value in values for element in value.split(",")]
    if not elements:
        return None, None
    chosen = elements[-1]
    for element in reversed(elements[:-1]):
        if not _is_trusted(_node_address(chosen.get("for")), trusted):
            break
        chosen = element
    return chosen.get("proto"), chosen.get("host")


def _pairs(element: str) -> dict[str, str]:
    """``for=1.2.3.4;proto=https;host="a.example"`` -> {"for": ..., "proto": ..., "host": ...}."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        name, sep, value = pair.partition("=")
        if sep:
            pairs[name.strip().lower()] = value.strip().strip('"')
    return pairs


def _node_address(node: str | None) -> str | None:
    """The IP of a ``for=`` node (``1.2.3.4:80``, ``[2001:db8::1]:80``); None for obfuscated or unknown ones."""
    if not node:
        return None
    if node.startswith("["):
        return node[1:].split("]")[0]
    return node.rsplit(":", 1)[0] if node.count(":") == 1 else node
