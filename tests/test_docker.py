"""What docker/docker-compose.yml promises (README "Operating"): a 3-member replica set, two server nodes behind
nginx, which is the only proxy the nodes trust and which sends them the forwarded headers. The file is read,
not run (running it needs Docker and images)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

from fhir_server.settings import Settings

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE: dict[str, Any] = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
NGINX = (DOCKER / "nginx.conf").read_text()


def _servers() -> dict[str, Any]:
    return {name: s for name, s in SERVICES.items() if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"}


def test_mongodb_is_a_replica_set_of_three_members_the_servers_all_name() -> None:
    mongos = sorted(name for name, s in SERVICES.items() if str(s.get("image", "")).startswith("mongo:"))
    assert mongos == ["mongo1", "mongo2", "mongo3"]
    initiate = " ".join(SERVICES["mongo1"]["healthcheck"]["test"].split())
    assert re.findall(r"host: '(mongo\d):27017'", initiate) == mongos
    for server in _servers().values():
        uri = server["environment"]["FHIR_MONGODB_URI"]
        assert uri == "mongodb://mongo1:27017,mongo2:27017,mongo3:27017/?replicaSet=rs0"


def test_two_server_nodes_run_behind_nginx_which_alone_they_trust() -> None:
    servers = _servers()
    assert sorted(servers) == ["fhir1", "fhir2"]
    proxy = SERVICES["proxy"]
    proxy_ip = ipaddress.ip_address(proxy["networks"]["backend"]["ipv4_address"])
    assert re.findall(r"server (fhir\d):8080", NGINX) == sorted(servers)
    for server in servers.values():
        env = server["environment"]
        assert "FHIR_BASE_URL" not in env  # the public URL comes from the proxy's headers
        trusted = Settings(trusted_proxies=env["FHIR_TRUSTED_PROXIES"]).trusted_proxy_networks
        assert [proxy_ip in network for network in trusted] == [True]
        assert "/health/ready" in " ".join(server["healthcheck"]["test"])
        assert _seconds(server["stop_grace_period"]) > float(env["FHIR_SHUTDOWN_TIMEOUT_SECONDS"])


def test_nginx_sends_the_forwarded_headers_and_a_request_id() -> None:
    for header in ("Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-For", "X-Request-Id"):
        assert re.search(rf"proxy_set_header {header} \S", NGINX), header
    assert "location = /metrics { return 404; }" in NGINX


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))
