"""Every read of a resource collection or of history in ``ResourceStore`` passes through the access checkpoint
(issue #11 item 7): a method that queries a collection must build its filter with ``self._filter``,
``self.access`` or ``guarded``; the few that read without it are named here, with the reason. Read from the
source (AST), so a new read path that forgets the filter fails here, not in a tenant-leak report (HAPI #6065)."""

from __future__ import annotations

import ast
import inspect

from fhir_server.storage import store

READS = {"find", "find_one", "count_documents", "aggregate", "find_one_and_update", "distinct", "watch"}
# what builds a filter through AccessPolicy.read_filter
GUARDS = {"_filter", "_read_filters", "guarded", "guarded_documents"}
# Reads without the caller's filter, each for a reason that returns no document to a caller:
UNFILTERED = {
    "assign_missing_centers",  # the start-up migration (the server's own work)
    "_last_content",  # ...its read of a deleted resource's last version
    "_stored_centers",  # the centers the write rules decide on: only a 403/404 leaves storage
    "read_counter",  # the conformance epoch, no resource
}


def _methods() -> dict[str, ast.AST]:
    tree = ast.parse(inspect.getsource(store.ResourceStore))
    cls = tree.body[0]
    assert isinstance(cls, ast.ClassDef)
    return {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _unguarded_reads(node: ast.AST) -> list[str]:
    """The reads of a collection (``<collection>.find(...)``, not ``self.find``) whose filter, the first
    argument, is not built by a guard."""
    found = []
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in READS):
            continue
        if isinstance(call.func.value, ast.Name) and call.func.value.id == "self":
            continue  # another method of the store, checked on its own
        first = call.args[0] if call.args else None
        guards = {n.attr for n in ast.walk(first) if isinstance(n, ast.Attribute)} if first else set()
        guards |= {n.id for n in ast.walk(first) if isinstance(n, ast.Name)} if first else set()
        if not guards & GUARDS:
            found.append(call.func.attr)
    return found


def test_every_read_of_a_collection_applies_the_access_filter() -> None:
    unguarded = {name for name, node in _methods().items() if _unguarded_reads(node)}
    assert unguarded == UNFILTERED


def test_the_check_sees_a_read_without_the_filter() -> None:
    sneaky = ast.parse("async def peek(self, ctx, kind, ident):\n"
                       "    await self._collection(kind).find_one(self._filter(ctx, kind, {'_id': ident}))\n"
                       "    return await self._collection(kind).find_one({'_id': ident})\n")
    assert _unguarded_reads(sneaky) == ["find_one"]
