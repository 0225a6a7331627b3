"""MongoDB commands per transaction Bundle (issue #14): every command of a transaction costs the server's driver
and mongod about as much as a small query's own work, so their number is a lever of its own.

bench/ingest.py's registry Bundles (every entry a conditional create) through the app in-process (as
bench/profile_write.py drives it), a PyMongo command listener counting every command by name and collection
after a warm-up, with the BSON size of what they send.

    .venv/bin/python bench/commands.py --patients 40
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path

import bson
import httpx
from pymongo import monitoring

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import mongod
from bench.profile_write import make_payloads, post_all
from fhir_server.api.app import create_app
from fhir_server.bootstrap import start_services
from fhir_server.settings import Settings


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.sizes: Counter[tuple[str, str]] = Counter()  # BSON bytes of the commands (documents included)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        key = (event.command_name, target if isinstance(target, str) else "")
        self.counts[key] += 1
        self.sizes[key] += len(bson.encode(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def run(args: argparse.Namespace, uri: str, counter: CommandCounter) -> None:
    settings = Settings(mongodb_uri=uri, mongodb_db=f"bench_commands_{uuid.uuid4().hex[:6]}", auth_mode="none")
    services = await start_services(settings, uri)
    try:
        app = create_app(settings, services)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     timeout=300) as http:
            warm, _ = make_payloads(20, args.seed + 1)
            await post_all(http, warm, args.clients)
            counter.counts.clear()
            payloads, _ = make_payloads(args.patients, args.seed)
            await post_all(http, payloads, args.clients)
    finally:
        await services.close()
    for (name, collection), count in counter.counts.most_common():
        size = counter.sizes[(name, collection)] / args.patients / 1024
        print(f"{count / args.patients:6.2f} per Bundle  {size:6.1f} KB per Bundle  {name} {collection}")
    total = sum(counter.sizes.values()) / args.patients / 1024
    print(f"{sum(counter.counts.values()) / args.patients:6.2f} per Bundle  {total:6.1f} KB per Bundle  in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2008)
    args = parser.parse_args()
    counter = CommandCounter()
    monitoring.register(counter)  # before the app's client is created: it sees every command
    with mongod() as uri:
        asyncio.run(run(args, uri, counter))


if __name__ == "__main__":
    main()
