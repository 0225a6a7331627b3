"""The grammar of the ``_filter`` search parameter (https://hl7.org/fhir/R4/search_filter.html), read into a tree.

    filter    = paramExp / logExp / ("not") "(" filter ")"
    logExp    = filter ("and" / "or" filter)+
    paramExp  = paramPath SP compareOp SP compValue
    paramPath = paramName (("[" filter "]") "." paramPath)     name.name chains; name[filter].name filters
    compValue = JSON string / token (non-whitespace, no ")" or "]")

``and`` and ``or`` have no precedence: they apply left to right (``a and b or c`` is ``(a and b) or c``). Keywords
and operators are read case-insensitively. This module only reads the text; what a test means on a parameter is
:mod:`fhir_server.search.filter_param`'s. Nesting and length are bounded: a filter is read recursively.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from fhir_server.errors import InvalidRequest

OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap", "sa", "eb", "pr", "po", "ss",
                       "sb", "in", "ni", "re"})
MAX_LENGTH = 4096
MAX_DEPTH = 16  # parentheses, not() and [filter] together
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_KEYWORD = re.compile(r"(and|or)(?=[\s(]|$)", re.IGNORECASE)
_NOT = re.compile(r"not\s*\(", re.IGNORECASE)
_TOKEN = re.compile(r"[^\s)\]]+")


@dataclass(frozen=True)
class PathStep:
    """One name of a parameter path; ``where`` is the ``[filter]`` after it, if any."""

    name: str
    where: FilterNode | None = None


@dataclass(frozen=True)
class Comparison:
    """``path op value``: ``quoted`` when the value was a JSON string (its escapes read)."""

    path: tuple[PathStep, ...]
    operator: str
    value: str
    quoted: bool

    @property
    def dotted(self) -> str:
        return ".".join(step.name for step in self.path)


@dataclass(frozen=True)
class Logical:
    operator: str  # and | or
    items: tuple[FilterNode, ...]
    grouped: bool = field(default=False, compare=False)  # written in parentheses: a following and/or wraps it


@dataclass(frozen=True)
class Negation:
    item: FilterNode


FilterNode = Comparison | Logical | Negation


def parse_filter(text: str) -> FilterNode:
    """The tree of a ``_filter`` value; ``InvalidRequest`` (400) naming the position of what is wrong."""
    if len(text) > MAX_LENGTH:
        raise _error(f"is longer than {MAX_LENGTH} characters", None)
    reader = _Reader(text)
    node = reader.filter(0)
    reader.skip_space()
    if not reader.at_end():
        raise _error(f"unexpected {reader.rest()!r}", reader.position)
    return node


def _error(what: str, position: int | None) -> InvalidRequest:
    where = f" at character {position + 1}" if position is not None else ""
    return InvalidRequest(f"_filter: {what}{where} (search_filter.html)", code="invalid")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def at_end(self) -> bool:
        return self.position >= len(self.text)

    def rest(self) -> str:
        return self.text[self.position:self.position + 20]

    def skip_space(self) -> None:
        while not self.at_end() and self.text[self.position].isspace():
            self.position += 1

    def expect(self, char: str) -> None:
        self.skip_space()
        if self.at_end() or self.text[self.position] != char:
            found = repr(self.rest()) if not self.at_end() else "the end"
            raise _error(f"expected {char!r}, found {found}", self.position)
        self.position += 1

    def filter(self, depth: int) -> FilterNode:
        if depth > MAX_DEPTH:
            raise _error(f"nests deeper than {MAX_DEPTH} levels", self.position)
        node = self.primary(depth)
        while True:
            self.skip_space()
            keyword = _KEYWORD.match(self.text, self.position)
            if keyword is None:
                return node
            self.position = keyword.end()
            operator = keyword.group(1).lower()
            right = self.primary(depth)
            # left to right: a run of one operator is one node; a change of operator wraps what came before
            if isinstance(node, Logical) and node.operator == operator and not node.grouped:
                node = Logical(operator, (*node.items, right))
            else:
                node = Logical(operator, (node, right))

    def primary(self, depth: int) -> FilterNode:
        self.skip_space()
        negation = _NOT.match(self.text, self.position)
        if negation is not None:
            self.position = negation.end()
            inner = self.filter(depth + 1)
            self.expect(")")
            return Negation(inner)
        if self.text.startswith("(", self.position):
            self.position += 1
            inner = self.filter(depth + 1)
            self.expect(")")
            return replace(inner, grouped=True) if isinstance(inner, Logical) else inner
        return self.test(depth)

    def test(self, depth: int) -> Comparison:
        path = self.path(depth)
        self.require_space("after the parameter path")
        start = self.position
        operator = self.word().lower()
        if operator not in OPERATORS:
            raise _error(f"{operator!r} is not a comparison operator ({', '.join(sorted(OPERATORS))})", start)
        self.require_space(f"after {operator!r}")
        value, quoted = self.value()
        return Comparison(path, operator, value, quoted)

    def path(self, depth: int) -> tuple[PathStep, ...]:
        steps: list[PathStep] = []
        while True:
            start = self.position
            name = _NAME.match(self.text, self.position)
            if name is None:
                raise _error(f"expected a parameter name, found {self.rest()!r}" if not self.at_end()
                             else "expected a parameter name, found the end", start)
            self.position = name.end()
            where = None
            if self.text.startswith("[", self.position):
                self.position += 1
                where = self.filter(depth + 1)
                self.expect("]")
                if not self.text.startswith(".", self.position):
                    raise _error(f"a [filter] on {name.group()!r} must be followed by '.name'", self.position)
            steps.append(PathStep(name.group(), where))
            if not self.text.startswith(".", self.position):
                return tuple(steps)
            self.position += 1

    def word(self) -> str:
        found = re.compile(r"[A-Za-z]+").match(self.text, self.position)
        if found is None:
            raise _error(f"expected a comparison operator, found {self.rest()!r}", self.position)
        self.position = found.end()
        return found.group()

    def require_space(self, where: str) -> None:
        if self.at_end() or not self.text[self.position].isspace():
            raise _error(f"expected a space {where}", self.position)
        self.skip_space()

    def value(self) -> tuple[str, bool]:
        start = self.position
        if self.text.startswith('"', start):
            return self.json_string(start), True
        token = _TOKEN.match(self.text, start)
        if token is None:
            raise _error("expected a value", start)
        self.position = token.end()
        return token.group(), False

    def json_string(self, start: int) -> str:
        index = start + 1
        while index < len(self.text):
            char = self.text[index]
            if char == "\\":
                index += 2
                continue
            if char == '"':
                try:
                    decoded = json.loads(self.text[start:index + 1])
                except ValueError as exc:
                    raise _error(f"bad JSON string: {exc.args[0]}", start) from exc
                if not _is_unicode_text(decoded):  # "\ud800": an escape of half a character, no text to search
                    raise _error("a JSON string escapes a lone surrogate", start)
                self.position = index + 1
                return str(decoded)
            index += 1
        raise _error("a JSON string is not closed", start)


def _is_unicode_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
