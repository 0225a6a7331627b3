"""FHIRPath text to parse tree, strictly, and the small tree vocabulary the compiler and rewrite passes share.

Spec: https://hl7.org/fhirpath/N1/#grammar (``entireExpression: expression EOF``). The tree is fhirpathpy's (its
ANTLR grammar and AST listener), so the same tree feeds the native compiler and the fhirpathpy fallback. fhirpathpy's
own ``parse`` recovers from syntax errors silently (``Patient.name)`` parses as ``Patient.name``, ``a b`` as
``a``); here any syntax error, and any text left after the expression, raises :class:`FhirPathSyntaxError`.
One leniency: ``div`` and ``mod`` right after a ``.`` are member names (``Patient.text.div``), as in HL7's own
FHIRPath engine and test cases (FHIR's FHIRPath Patch suite replaces ``Patient.text.div``). N1's grammar reserves them
for the operators, but an operator never follows a dot, so nothing else could be meant.
Trees are shared (parses are cached) and never mutated: a pass that rewrites one builds new nodes.
"""

from __future__ import annotations

import functools
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

Node = dict[str, Any]


class FhirPathSyntaxError(ValueError):
    """The text is not a FHIRPath expression."""


class _Raise(ErrorListener):
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str,
                    e: Any) -> None:
        raise FhirPathSyntaxError(f"column {column + 1}: {msg}")


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """The expression node of ``text`` (the root's only child in fhirpathpy's tree); raises on any error."""
    if not text.strip():
        raise FhirPathSyntaxError("empty expression")
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    tokens = CommonTokenStream(lexer)
    _keywords_after_dot_as_names(tokens)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    entire = parser.entireExpression()  # expression EOF: trailing text is an error, not ignored
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, entire.expression())
    root: Node = listener.parentStack[0]
    return root["children"][0]


_OPERATOR_NAMES = frozenset({"div", "mod"})


def _keywords_after_dot_as_names(tokens: CommonTokenStream) -> None:
    tokens.fill()
    previous = None
    for token in tokens.tokens:
        if token.channel != 0:  # whitespace and comments
            continue
        if token.text in _OPERATOR_NAMES and previous is not None and previous.text == ".":
            token.type = FHIRPathLexer.IDENTIFIER
        previous = token


def children(node: Node) -> list[Node]:
    return node.get("children") or []


def operator(node: Node) -> str:
    """The operator of a binary expression node (``and``, ``=``, ``|``...)."""
    return node["terminalNodeText"][0]


def identifier(node: Node) -> str | None:
    """The name of a ``TermExpression``/``InvocationTerm``/``MemberInvocation`` that is one plain identifier
    (``Quantity`` in ``ofType(Quantity)``), else None."""
    while node.get("type") in ("TermExpression", "InvocationTerm", "MemberInvocation", "TypeSpecifier",
                               "QualifiedIdentifier"):
        parts = children(node)
        if len(parts) != 1:
            return None
        node = parts[0]
    return node["text"] if node.get("type") == "Identifier" else None


def function_name(node: Node) -> str | None:
    """The name of a ``FunctionInvocation`` node (``where`` in ``.where(...)``), else None."""
    if node.get("type") != "FunctionInvocation":
        return None
    return children(children(node)[0])[0]["text"]


def function_params(node: Node) -> list[Node]:
    """The parameter expressions of a ``FunctionInvocation`` node."""
    parts = children(children(node)[0])
    return children(parts[1]) if len(parts) > 1 else []


def invocation(left: Node, right: Node) -> Node:
    """``left.right``: an ``InvocationExpression`` node (``right`` a member or function invocation)."""
    return {"type": "InvocationExpression", "terminalNodeText": ["."], "children": [left, right]}


def term(invoked: Node) -> Node:
    """A member or function invocation as the first term of an expression (``meta`` in ``meta.tag``)."""
    return {"type": "TermExpression", "terminalNodeText": [],
            "children": [{"type": "InvocationTerm", "terminalNodeText": [], "children": [invoked]}]}


def of_type_call(type_name: str) -> Node:
    """The node of ``.ofType(type_name)``, shaped as the parser shapes it (fhirpathpy evaluates it too)."""
    return children(parse(f"$this.ofType({type_name})"))[1]
