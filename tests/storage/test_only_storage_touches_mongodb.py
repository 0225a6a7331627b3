"""Nothing outside ``fhir_server/storage/`` touches MongoDB (issue #10): no driver import (the session storage
hands out is named ``storage.store.DbSession``), no database or client handle, no session of its own. Read from
the source (AST), so a new module that reaches around the store fails here, not in a security review."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import fhir_server

PACKAGE = Path(fhir_server.__file__).parent
STORAGE = PACKAGE / "storage"
FORBIDDEN_NAMES = {"AsyncMongoClient", "MongoClient", "AsyncDatabase", "AsyncCollection", "start_session"}
FORBIDDEN_ATTRIBUTES = {"db", "_db", "start_session", "_collection"}


def _outside_storage() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORAGE not in path.parents:
            yield path


def _violations(source: str, where: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] in ("pymongo", "motor"):
                yield f"{where}:{node.lineno} imports {module}"
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            yield f"{where}:{node.lineno} uses .{node.attr}"
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            yield f"{where}:{node.lineno} uses {node.id}"


def test_no_module_outside_storage_touches_mongodb() -> None:
    found = [v for path in _outside_storage()
             for v in _violations(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))]
    assert found == []


def test_the_check_sees_a_module_that_reaches_around_the_store() -> None:
    sneaky = ("from pymongo import AsyncMongoClient\n"
              "async def f(services):\n"
              "    await services.store.db['jobs'].find_one({})\n"
              "    async with services.store._db.client.start_session() as s:\n"
              "        return AsyncMongoClient\n")
    assert sorted(_violations(sneaky, "sneaky.py")) == [
        "sneaky.py:1 imports pymongo", "sneaky.py:3 uses .db", "sneaky.py:4 uses ._db",
        "sneaky.py:4 uses .start_session", "sneaky.py:5 uses AsyncMongoClient"]
