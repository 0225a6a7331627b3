"""Fixtures of the storage tests, which drive ``ResourceStore`` directly against the session's mongod."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient

from fhir_server.storage.store import ResourceStore


@pytest.fixture
async def private_store(mongo_uri: str, mongo_client: AsyncMongoClient) -> AsyncIterator[ResourceStore]:
    """A store on a database of its own, dropped after the test."""
    name = f"private_store_{uuid.uuid4().hex[:8]}"
    store = ResourceStore.open(mongo_uri, name)
    yield store
    await store.close()
    await mongo_client.drop_database(name)
