"""SQL-on-FHIR v2 ViewDefinitions compiled to one SQL query over a table of resources.

The query reads a relation with one JSON column, ``resource``, one resource a row, and gives the
view's rows. Every FHIRPath expression becomes a SQL expression of a *list of JSON values*: a
FHIRPath collection, in order, empty when nothing is there. A select becomes a list of rows
(structs with every column of the select) built from its focus, so ``forEach``, ``unionAll`` and
nested selects are list operations inside one row of the input and the query ends in ``unnest``.
Nothing is evaluated in Python: the same SQL runs wherever the engine runs.

What a ViewDefinition asks that SQL cannot say here (a FHIRPath function outside the
specification's subset, ``ofType`` of a value whose type is not known) is a ViewError naming the
expression; a value that breaks the view at run time (two values in a column that is not a
collection, a ``where`` that is not boolean) stops the query with the column or path named.

The R4 definitions give each step its static type: whether an element repeats (a JSON array),
what type its values are, and which JSON members a choice element (``value[x]``) is spread over,
so that ``value.ofType(Quantity)`` reads ``valueQuantity``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhirpathpy.parser import parse

from .. import r4
from .definition import Column, ViewError, at, check_view, constant_value, select_columns

# How deep ``repeat`` follows its paths; deeper nesting stops the query with a message.
REPEAT_DEPTH = 12

INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
NUMBER_JSON = "('BIGINT', 'UBIGINT', 'HUGEINT', 'UHUGEINT', 'DOUBLE')"
INTEGER_JSON = "('BIGINT', 'UBIGINT', 'HUGEINT', 'UHUGEINT')"


def sql_type(column: Column) -> str:
    """The SQL type a column's values are given in."""
    base = {"boolean": "BOOLEAN", "decimal": "DOUBLE"}.get(column.type or "", "VARCHAR")
    if column.type in INTEGER_TYPES:
        base = "BIGINT"
    return f"{base}[]" if column.collection else base


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# -- static types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Typed:
    """What is known of a collection's items: the FHIR type code of each item and, for items of a
    backbone element, the type and element path that define their children."""

    code: str
    owner: str  # the type whose definitions hold ``path``
    path: str  # the element path inside ``owner`` (``owner`` itself for a whole type)


@cache
def _definitions(type_name: str) -> dict[str, r4.ElementDef]:
    try:
        return {e.path: e for e in r4.base_elements(type_name)}
    except KeyError:
        return {}


def _suffix(code: str) -> str:
    return code[0].upper() + code[1:]


@dataclass(frozen=True)
class Child:
    """A child element as stored in JSON: its member names with each one's type, and whether it
    repeats."""

    members: tuple[tuple[str, Typed | None], ...]
    many: bool | None  # None: not known (read whatever is there)
    choice: bool = False


def _child(parent: Typed | None, name: str) -> Child:
    if parent is None:
        return Child(((name, None),), None)
    definitions = _definitions(parent.owner)
    element = definitions.get(f"{parent.path}.{name}")
    if element is not None:
        return Child(((name, _typed_of(parent.owner, element)),), element.max != "1")
    element = definitions.get(f"{parent.path}.{name}[x]")
    if element is not None:
        members = tuple(
            (name + _suffix(t.code), Typed(t.code, t.code, t.code)) for t in element.types
        )
        return Child(members, False, choice=True)
    # not an element of the type: nothing is there (FHIRPath's static typing would refuse it)
    return Child((), False)


def _typed_of(owner: str, element: r4.ElementDef) -> Typed | None:
    if element.content_reference:
        path = element.content_reference.lstrip("#")
        return Typed("BackboneElement", path.split(".")[0], path)
    codes = [t.code for t in element.types]
    if len(codes) != 1:
        return None
    code = codes[0]
    if code in ("BackboneElement", "Element"):
        return Typed(code, owner, element.path)
    if code.startswith("http://hl7.org/fhirpath/System."):
        return Typed("string", "string", "string")
    if _definitions(code):
        return Typed(code, code, code)
    return Typed(code, code, code)


# -- compiled expressions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """A compiled FHIRPath expression: SQL of a list of JSON values, and what its items are.
    ``choices`` keeps, for a choice element, the members it was read from, so that ``ofType``
    can read just one of them."""

    sql: str
    typed: Typed | None
    choices: tuple[tuple[str, Typed | None], ...] = ()
    parent: str = ""


@dataclass
class Scope:
    """What an expression is compiled in: the view's constants, the row index of the nearest
    iteration, the resource, and the expression's own text for messages."""

    constants: dict[str, tuple[Any, str]]
    index: str
    resource: str
    resource_type: str
    where: str
    text: str = ""
    names: Callable[[], str] = field(default=lambda: "v")

    def fail(self, message: str) -> ViewError:
        return ViewError(self.where, f"{message} (in {self.text!r})")


EMPTY = "[]::JSON[]"


def _let(value: str, body: Callable[[str], str], names: Callable[[], str]) -> str:
    """``body`` applied to ``value`` evaluated once."""
    name = names()
    return f"list_transform([{value}], lambda {name}: {body(name)})[1]"


def _json_literal(value: Any) -> str:
    return f"{quote(json.dumps(value, ensure_ascii=False))}::JSON"


def _is_number(v: str) -> str:
    return f"json_type({v}) IN {NUMBER_JSON}"


def _step(collection: str, member: str, many: bool | None, primitive: bool, scope: Scope) -> str:
    x = scope.names()
    path = quote(f'$."{member}"')
    if many is False:
        return (
            f"list_filter(list_transform({collection}, lambda {x}: json_extract({x}, {path})), "
            f"lambda {x}: {x} IS NOT NULL)"
        )
    if many is True:
        items = f"coalesce(CAST(json_extract({x}, {path}) AS JSON[]), {EMPTY})"
        if primitive:  # a primitive array keeps a null where only an extension is
            y = scope.names()
            items = f"list_filter({items}, lambda {y}: json_type({y}) <> 'NULL')"
        return f"flatten(list_transform({collection}, lambda {x}: {items}))"

    def spread(v: str) -> str:
        return (
            f"CASE WHEN {v} IS NULL OR json_type({v}) = 'NULL' THEN {EMPTY} "
            f"WHEN json_type({v}) = 'ARRAY' THEN CAST({v} AS JSON[]) ELSE [{v}] END"
        )

    inner = _let(f"json_extract({x}, {path})", spread, scope.names)
    return f"flatten(list_transform({collection}, lambda {x}: {inner}))"


def _navigate(source: Expr, name: str, scope: Scope) -> Expr:
    child = _child(source.typed, name)
    parts = [
        _step(
            source.sql,
            member,
            child.many,
            typed is not None and typed.code[:1].islower(),
            scope,
        )
        for member, typed in child.members
    ]
    if not parts:
        return Expr(EMPTY, None)
    if child.choice:
        sql = parts[0]
        for part in parts[1:]:
            sql = f"list_concat({sql}, {part})"
        return Expr(sql, None, child.members, source.sql)
    return Expr(parts[0], child.members[0][1])


def _from_bool(boolean: str) -> str:
    """A SQL boolean (NULL: unknown) as a FHIRPath collection (empty when unknown)."""
    return f"list_filter([to_json({boolean})], lambda b: b IS NOT NULL)"


def _truth(expr: Expr, scope: Scope) -> str:
    """A collection as a SQL boolean: NULL when empty; a single non-boolean value is true."""

    def body(c: str) -> str:
        return (
            f"CASE WHEN len({c}) = 0 THEN NULL WHEN len({c}) > 1 THEN "
            f"error({quote(f'{scope.where}: {scope.text!r} gives several values where one boolean is expected')}) "
            f"WHEN json_type({c}[1]) = 'BOOLEAN' THEN CAST({c}[1] AS BOOLEAN) ELSE true END"
        )

    return _let(expr.sql, body, scope.names)


def _boolean(sql: str) -> Expr:
    return Expr(sql, Typed("boolean", "boolean", "boolean"))


# -- FHIRPath abstract syntax (fhirpathpy's parse tree) to SQL --------------------------------


def _identifier(node: dict[str, Any]) -> str:
    text = node["terminalNodeText"][0]
    return text[1:-1] if text.startswith("`") else text


Node = dict[str, Any]
_WRAPPERS = ("EntireExpression", "TermExpression", "InvocationTerm", "LiteralTerm")


def _compile(node: Node, focus: Expr, scope: Scope) -> Expr:
    """A node of the parse tree as SQL, read against ``focus`` (the collection a path starts
    from: ``$this``)."""
    kind = node.get("type")
    children = node.get("children", [])
    if kind is None or kind in _WRAPPERS or kind == "ParenthesizedTerm":
        if len(children) != 1:
            raise scope.fail("an expression could not be read")
        return _compile(children[0], focus, scope)
    handler = _NODES.get(kind)
    if handler is None:
        raise scope.fail(f"{kind} is not in the FHIRPath subset of SQL on FHIR")
    return handler(node, focus, scope)


def _member(node: Node, focus: Expr, scope: Scope) -> Expr:
    name = _identifier(node["children"][0])
    if name == scope.resource_type and focus.sql == f"[{scope.resource}]":
        return focus  # Patient.name: the type name at the start names the resource
    return _navigate(focus, name, scope)


def _invocation(node: Node, focus: Expr, scope: Scope) -> Expr:
    """``left.member`` or ``left.function(...)``."""
    left = _compile(node["children"][0], focus, scope)
    right = node["children"][1]
    if right["type"] == "MemberInvocation":
        return _navigate(left, _identifier(right["children"][0]), scope)
    if right["type"] == "FunctionInvocation":
        return _function(right["children"][0], left, focus, scope)
    raise scope.fail(f"{right['type']} is not in the FHIRPath subset of SQL on FHIR")


def _indexer(node: Node, focus: Expr, scope: Scope) -> Expr:
    left, index = (_compile(c, focus, scope) for c in node["children"])
    position = _let(
        index.sql,
        lambda i: f"CASE WHEN len({i}) = 1 THEN CAST({i}[1] AS BIGINT) + 1 ELSE NULL END",
        scope.names,
    )
    return Expr(f"list_slice({left.sql}, {position}, {position})", left.typed)


def _moment(node: Node, focus: Expr, scope: Scope) -> Expr:
    """A date, dateTime or time literal (@2020-01, @2020-01-01T10:00:00Z, @T10:00)."""
    text = node["terminalNodeText"][0].lstrip("@")
    code = "time" if text.startswith("T") else "dateTime" if "T" in text else "date"
    return Expr(f"[{_json_literal(text.lstrip('T'))}]", Typed(code, code, code))


def _polarity(node: Node, focus: Expr, scope: Scope) -> Expr:
    operand = _compile(node["children"][0], focus, scope)
    if node["terminalNodeText"][0] == "+":
        return operand
    return _arithmetic("-", Expr(f"[{_json_literal(0)}]", None), operand, scope)


def _binary_arithmetic(node: Node, focus: Expr, scope: Scope) -> Expr:
    left, right = (_compile(c, focus, scope) for c in node["children"])
    return _arithmetic(node["terminalNodeText"][0], left, right, scope)


def _union(node: Node, focus: Expr, scope: Scope) -> Expr:
    """``a | b``: the items of both, each once, in order."""
    left, right = (_compile(c, focus, scope) for c in node["children"])

    def distinct(c: str) -> str:
        x, k = scope.names(), scope.names()
        return (
            f"list_filter({c}, lambda {x}, {k}: "
            f"NOT list_contains(list_slice({c}, 1, {k} - 1), {x}))"
        )

    typed = left.typed if left.typed == right.typed else None
    return Expr(_let(f"list_concat({left.sql}, {right.sql})", distinct, scope.names), typed)


def _literal(node: Node, focus: Expr, scope: Scope) -> Expr:
    kind = node["type"]
    if kind == "NullLiteral":
        return Expr(EMPTY, None)
    text = node["terminalNodeText"][0]
    if kind == "StringLiteral":
        value = _unescape(text[1:-1])
        return Expr(f"[{_json_literal(value)}]", Typed("string", "string", "string"))
    if kind == "BooleanLiteral":
        return _boolean(f"[{_json_literal(text == 'true')}]")
    code = "decimal" if "." in text else "integer"
    return Expr(f"[{quote(text)}::JSON]", Typed(code, code, code))


_ESCAPES = {"'": "'", '"': '"', "`": "`", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match[1]
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, "\\" + code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)


def _constant(node: dict[str, Any], scope: Scope) -> Expr:
    name = _identifier(node["children"][0])
    if name == "rowIndex":
        return Expr(f"[to_json({scope.index})]", Typed("integer", "integer", "integer"))
    if name in ("resource", "rootResource"):
        root = scope.resource_type
        return Expr(f"[{scope.resource}]", Typed(root, root, root))
    if name not in scope.constants:
        raise scope.fail(f"%{name} is not a constant of this view")
    value, code = scope.constants[name]
    return Expr(f"[{_json_literal(value)}]", Typed(code, code, code))


def _pair(left: str, right: str, body: Callable[[str, str], str], scope: Scope) -> str:
    return _let(left, lambda a: _let(right, lambda b: body(a, b), scope.names), scope.names)


def _equality(node: dict[str, Any], focus: Expr, scope: Scope) -> Expr:
    operator = node["terminalNodeText"][0]
    left, right = (_compile(c, focus, scope) for c in node["children"])
    if operator not in ("=", "!="):
        raise scope.fail(f"the operator {operator} is not supported")

    def body(a: str, b: str) -> str:
        x, i = scope.names(), scope.names()
        same = (
            f"len({a}) = len({b}) AND coalesce(list_bool_and(list_transform({a}, "
            f"lambda {x}, {i}: {_equal(x, f'{b}[{i}]')})), true)"
        )
        if operator == "!=":
            same = f"NOT ({same})"
        return f"CASE WHEN len({a}) = 0 OR len({b}) = 0 THEN {EMPTY} ELSE [to_json({same})] END"

    return _boolean(_pair(left.sql, right.sql, body, scope))


def _equal(a: str, b: str) -> str:
    return (
        f"CASE WHEN {_is_number(a)} AND {_is_number(b)} THEN CAST({a} AS DOUBLE) = "
        f"CAST({b} AS DOUBLE) ELSE {a}->>'$' = {b}->>'$' END"
    )


def _single(c: str, scope: Scope) -> str:
    message = f"{scope.where}: {scope.text!r} gives several values where one is expected"
    return f"CASE WHEN len({c}) > 1 THEN error({quote(message)}) ELSE {c}[1] END"


def _inequality(node: dict[str, Any], focus: Expr, scope: Scope) -> Expr:
    operator = node["terminalNodeText"][0]
    left, right = (_compile(c, focus, scope) for c in node["children"])

    def body(a: str, b: str) -> str:
        def compare(x: str, y: str) -> str:
            return (
                f"CASE WHEN {_is_number(x)} AND {_is_number(y)} THEN CAST({x} AS DOUBLE) "
                f"{operator} CAST({y} AS DOUBLE) ELSE {x}->>'$' {operator} {y}->>'$' END"
            )

        inner = _pair(_single(a, scope), _single(b, scope), compare, scope)
        return f"CASE WHEN len({a}) = 0 OR len({b}) = 0 THEN {EMPTY} ELSE [to_json({inner})] END"

    return _boolean(_pair(left.sql, right.sql, body, scope))


def _logic(node: dict[str, Any], focus: Expr, scope: Scope) -> Expr:
    operator = node["terminalNodeText"][0]
    left, right = (_truth(_compile(c, focus, scope), scope) for c in node["children"])
    if operator == "and":
        return _boolean(_from_bool(f"({left}) AND ({right})"))
    if operator == "or":
        return _boolean(_from_bool(f"({left}) OR ({right})"))
    if operator == "xor":
        return _boolean(_from_bool(f"({left}) <> ({right})"))
    return _boolean(_from_bool(f"(NOT ({left})) OR ({right})"))  # implies


def _arithmetic(operator: str, left: Expr, right: Expr, scope: Scope) -> Expr:
    if operator == "&":
        return Expr(
            f"[to_json(array_to_string(list_transform(list_concat({left.sql}, {right.sql}), "
            f"lambda s: s->>'$'), ''))]",
            Typed("string", "string", "string"),
        )
    if operator not in ("+", "-", "*", "/", "div", "mod"):
        raise scope.fail(f"the operator {operator} is not supported")
    sql_operator = {"div": "//", "mod": "%"}.get(operator, operator)

    def compute(a: str, b: str) -> str:
        integers = f"json_type({a}) IN {INTEGER_JSON} AND json_type({b}) IN {INTEGER_JSON}"
        exact = f"to_json(CAST({a} AS BIGINT) {sql_operator} CAST({b} AS BIGINT))"
        inexact = f"to_json(CAST({a} AS DOUBLE) {sql_operator} CAST({b} AS DOUBLE))"
        text = f"to_json(({a}->>'$') || ({b}->>'$'))"
        number = f"CASE WHEN {integers} THEN {exact} ELSE {inexact} END"
        if operator == "/":
            number = inexact
        if operator == "+":
            return f"CASE WHEN {_is_number(a)} AND {_is_number(b)} THEN {number} ELSE {text} END"
        return number

    def body(a: str, b: str) -> str:
        value = _pair(_single(a, scope), _single(b, scope), compute, scope)
        return f"CASE WHEN len({a}) = 0 OR len({b}) = 0 THEN {EMPTY} ELSE [{value}] END"

    typed = left.typed if left.typed == right.typed else None
    return Expr(_pair(left.sql, right.sql, body, scope), typed)


_NODES: dict[str, Callable[[Node, Expr, Scope], Expr]] = {
    "MemberInvocation": _member,
    "ThisInvocation": lambda node, focus, scope: focus,
    "FunctionInvocation": lambda node, focus, scope: _function(
        node["children"][0], focus, focus, scope
    ),
    "InvocationExpression": _invocation,
    "IndexerExpression": _indexer,
    "StringLiteral": _literal,
    "NumberLiteral": _literal,
    "BooleanLiteral": _literal,
    "NullLiteral": _literal,
    "DateLiteral": _moment,
    "DateTimeLiteral": _moment,
    "TimeLiteral": _moment,
    "ExternalConstantTerm": lambda node, focus, scope: _constant(node["children"][0], scope),
    "PolarityExpression": _polarity,
    "EqualityExpression": _equality,
    "InequalityExpression": _inequality,
    "AndExpression": _logic,
    "OrExpression": _logic,
    "ImpliesExpression": _logic,
    "AdditiveExpression": _binary_arithmetic,
    "MultiplicativeExpression": _binary_arithmetic,
    "UnionExpression": _union,
}


# -- functions ---------------------------------------------------------------------------------


def _function(node: dict[str, Any], source: Expr, focus: Expr, scope: Scope) -> Expr:
    """A function applied to ``source``; its arguments are read against each item (where,
    exists) or against ``focus``, the expression's own input (join's separator)."""
    name = _identifier(node["children"][0])
    params = node["children"][1]["children"] if len(node["children"]) > 1 else []
    handler = _FUNCTIONS.get(name)
    if handler is None:
        raise scope.fail(f"{name}() is not in the FHIRPath subset of SQL on FHIR")
    arity, run = handler
    if len(params) not in arity:
        raise scope.fail(f"{name}() takes {' or '.join(str(a) for a in arity)} argument(s)")
    return run(source, params, focus, scope)


def _each(source: Expr, params: list[Any], scope: Scope) -> tuple[str, str]:
    """The variable and SQL of a per-item argument (the criteria of where, exists, all)."""
    x = scope.names()
    inner = _compile(params[0], Expr(f"[{x}]", source.typed), scope)
    return x, inner.sql


def _where(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    x, criteria = _each(source, params, scope)
    truth = _truth(Expr(criteria, None), scope)
    return Expr(f"list_filter({source.sql}, lambda {x}: coalesce({truth}, false))", source.typed)


def _exists(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    if params:
        source = _where(source, params, focus, scope)
    return _boolean(f"[to_json(len({source.sql}) > 0)]")


def _all(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    x, criteria = _each(source, params, scope)
    truth = _truth(Expr(criteria, None), scope)
    return _boolean(
        f"[to_json(coalesce(list_bool_and(list_transform({source.sql}, lambda {x}: "
        f"coalesce({truth}, false))), true))]"
    )


def _select(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    x, projection = _each(source, params, scope)
    return Expr(f"flatten(list_transform({source.sql}, lambda {x}: {projection}))", None)


def _empty(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return _boolean(f"[to_json(len({source.sql}) = 0)]")


def _first(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return Expr(f"list_slice({source.sql}, 1, 1)", source.typed)


def _last(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return Expr(f"list_slice({source.sql}, -1, -1)", source.typed)


def _count(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return Expr(f"[to_json(len({source.sql}))]", Typed("integer", "integer", "integer"))


def _not(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return _boolean(_from_bool(f"NOT ({_truth(source, scope)})"))


def _join(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    separator = "''"
    if params:
        value = _compile(params[0], focus, scope)
        separator = f"coalesce({_let(value.sql, lambda s: f'{s}[1]', scope.names)}->>'$', '')"
    x = scope.names()
    return Expr(
        f"[to_json(array_to_string(list_transform({source.sql}, lambda {x}: {x}->>'$'), "
        f"{separator}))]",
        Typed("string", "string", "string"),
    )


def _type_name(param: dict[str, Any], scope: Scope) -> str:
    text = re.sub(r"\s+", "", _text(param))
    text = text.removeprefix("FHIR.").removeprefix("System.")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", text):
        raise scope.fail(f"{text!r} is not a type name")
    return text


def _text(node: dict[str, Any]) -> str:
    """The source text of a node of the parse tree (identifiers only)."""
    if node.get("type") == "Identifier":
        return _identifier(node)
    return ".".join(_text(c) for c in node.get("children", []))


_SYSTEM = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal"}


def _of_type(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    wanted = _type_name(params[0], scope)
    wanted = _SYSTEM.get(wanted, wanted)
    if source.choices:
        for member, typed in source.choices:
            if typed is not None and typed.code == wanted:
                primitive = wanted[:1].islower()
                return Expr(_step(source.parent, member, False, primitive, scope), typed)
        return Expr(EMPTY, None)
    if source.typed is None:
        raise scope.fail(
            f"ofType({wanted}) of values whose type is not known from the R4 definitions"
        )
    if source.typed.code == wanted or (
        source.typed.code in ("Resource", "DomainResource") and r4.is_resource_type(wanted)
    ):
        if r4.is_resource_type(wanted) and source.typed.code != wanted:
            x = scope.names()
            return Expr(
                f"list_filter({source.sql}, lambda {x}: {x}->>'resourceType' = {quote(wanted)})",
                Typed(wanted, wanted, wanted),
            )
        return source
    return Expr(EMPTY, None)


def _extension(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    url = _compile(params[0], focus, scope)
    extensions = _navigate(
        Expr(source.sql, source.typed or Typed("Element", "Element", "Element")),
        "extension",
        scope,
    )
    x = scope.names()
    wanted = _let(url.sql, lambda u: f"{u}[1]->>'$'", scope.names)
    return Expr(
        f"list_filter({extensions.sql}, lambda {x}: {x}->>'url' = {wanted})",
        Typed("Extension", "Extension", "Extension"),
    )


def _resource_key(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    x = scope.names()
    return Expr(
        f"list_filter(list_transform({source.sql}, lambda {x}: json_extract({x}, '$.id')), "
        f"lambda {x}: {x} IS NOT NULL)",
        Typed("string", "string", "string"),
    )


# Type/id at the end of a reference (relative or absolute, with or without a version)
_REFERENCE = r"(^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(/_history/[^/]+)?$"


def _reference_key(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    wanted = _type_name(params[0], scope) if params else None
    x = scope.names()
    reference = f"({x}->>'reference')"
    keep = f"regexp_matches({reference}, {quote(_REFERENCE)})"
    if wanted:
        keep += f" AND regexp_extract({reference}, {quote(_REFERENCE)}, 2) = {quote(wanted)}"
    y = scope.names()
    return Expr(
        f"list_transform(list_filter({source.sql}, lambda {x}: coalesce({keep}, false)), "
        f"lambda {y}: to_json(regexp_extract({y}->>'reference', {quote(_REFERENCE)}, 3)))",
        Typed("string", "string", "string"),
    )


def _boundary(high: bool) -> Callable[[Expr, list[Any], Expr, Scope], Expr]:
    def run(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
        code = source.typed.code if source.typed else None
        make = {
            "decimal": _decimal_boundary,
            "integer": _decimal_boundary,
            "date": _date_boundary,
            "dateTime": _datetime_boundary,
            "instant": _datetime_boundary,
            "time": _time_boundary,
        }.get(code or "")
        if make is None:
            raise scope.fail(
                f"{'high' if high else 'low'}Boundary() of values whose type "
                f"({code or 'not known'}) is not decimal, date, dateTime, instant or time"
            )
        x = scope.names()
        assert code is not None
        return Expr(
            f"list_transform({source.sql}, lambda {x}: {make(x, high)})",
            Typed(code, code, code),
        )

    return run


def _decimal_boundary(x: str, high: bool) -> str:
    """Half a unit of the last digit given, either way (1.0: 0.95 to 1.05)."""
    text = f"({x}->>'$')"
    digits = f"CASE WHEN contains({text}, '.') THEN length(split_part({text}, '.', 2)) ELSE 0 END"
    sign = "+" if high else "-"
    return f"to_json(CAST({x} AS DOUBLE) {sign} 0.5 * pow(10, -({digits})))"


def _date_boundary(x: str, high: bool) -> str:
    text = f"({x}->>'$')"
    if not high:
        return (
            f"to_json(CASE length({text}) WHEN 4 THEN {text} || '-01-01' "
            f"WHEN 7 THEN {text} || '-01' ELSE {text} END)"
        )
    return (
        f"to_json(CASE length({text}) WHEN 4 THEN {text} || '-12-31' WHEN 7 THEN "
        f"strftime(last_day(CAST({text} || '-01' AS DATE)), '%Y-%m-%d') ELSE {text} END)"
    )


def _datetime_boundary(x: str, high: bool) -> str:
    text = f"({x}->>'$')"
    date = f"regexp_extract({text}, '^[0-9-]+')"
    time = f"regexp_extract({text}, 'T([0-9:]+)', 1)"
    fraction = f"regexp_extract({text}, '(\\.[0-9]+)', 1)"
    zone = f"regexp_extract({text}, '(Z|[+-][0-9]{{2}}:[0-9]{{2}})$', 1)"
    day = _date_boundary(f"to_json({date})", high) + "->>'$'"
    clock = (
        f"CASE WHEN {time} = '' THEN {quote('23:59:59' if high else '00:00:00')} ELSE {time} END"
    )
    millis = (
        f"CASE WHEN {fraction} = '' THEN {quote('.999' if high else '.000')} ELSE {fraction} END"
    )
    offset = f"CASE WHEN {zone} = '' THEN {quote('-12:00' if high else '+14:00')} ELSE {zone} END"
    return f"to_json({day} || 'T' || {clock} || {millis} || {offset})"


def _time_boundary(x: str, high: bool) -> str:
    text = f"({x}->>'$')"
    clock = f"regexp_extract({text}, '^[0-9:]+')"
    whole = (
        f"CASE length({clock}) WHEN 2 THEN {clock} || {quote(':59:59' if high else ':00:00')} "
        f"WHEN 5 THEN {clock} || {quote(':59' if high else ':00')} ELSE {clock} END"
    )
    fraction = f"regexp_extract({text}, '(\\.[0-9]+)', 1)"
    millis = (
        f"CASE WHEN {fraction} = '' THEN {quote('.999' if high else '.000')} ELSE {fraction} END"
    )
    return f"to_json({whole} || {millis})"


_FUNCTIONS: dict[str, tuple[tuple[int, ...], Callable[[Expr, list[Any], Expr, Scope], Expr]]] = {
    "where": ((1,), _where),
    "exists": ((0, 1), _exists),
    "all": ((1,), _all),
    "select": ((1,), _select),
    "empty": ((0,), _empty),
    "first": ((0,), _first),
    "last": ((0,), _last),
    "count": ((0,), _count),
    "not": ((0,), _not),
    "join": ((0, 1), _join),
    "ofType": ((1,), _of_type),
    "extension": ((1,), _extension),
    "getResourceKey": ((0,), _resource_key),
    "getReferenceKey": ((0, 1), _reference_key),
    "lowBoundary": ((0,), _boundary(False)),
    "highBoundary": ((0,), _boundary(True)),
}


# -- the view ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    """A view as one SQL query over ``source`` (a relation with a JSON column ``resource``)."""

    sql: str
    columns: tuple[Column, ...]
    resource: str


def _parse(text: str, scope: Scope) -> dict[str, Any]:
    try:
        tree: dict[str, Any] = parse(text)
    except Exception as e:  # the ANTLR parser raises several kinds, none of them ours
        raise ViewError(scope.where, f"{text!r} is not valid FHIRPath ({type(e).__name__})") from e
    return tree


class _Compiler:
    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view
        self.resource_type = view["resource"]
        self.constants: dict[str, tuple[Any, str]] = {}
        for i, constant in enumerate(view.get("constant", [])):
            name, value, code = constant_value(constant, f"constant[{i}]")
            self.constants[name] = (value, code)
        counter = itertools.count(1)
        self.names = lambda: f"v{next(counter)}"

    def expression(self, text: str, focus: Expr, index: str, where: str) -> Expr:
        scope = Scope(self.constants, index, "r", self.resource_type, where, text, names=self.names)
        return _compile(_parse(text, scope), focus, scope)

    def column(self, column: Column, focus: Expr, index: str, where: str) -> str:
        value = self.expression(column.path, focus, index, where)
        target = sql_type(column)
        base = target.removesuffix("[]")

        def cast(v: str) -> str:
            if base == "VARCHAR":
                return f"({v}->>'$')"
            return f"CAST({v} AS {base})"

        if column.collection:
            x = self.names()
            return f"list_transform({value.sql}, lambda {x}: {cast(x)})"
        message = (
            f"{where}: column {column.name!r} ({column.path!r}) gives several values; "
            "a column that is not a collection holds one"
        )
        return _let(
            value.sql,
            lambda c: (
                f"CASE WHEN len({c}) > 1 THEN error({quote(message)}) ELSE {cast(f'{c}[1]')} END"
            ),
            self.names,
        )

    def rows(self, select: dict[str, Any], focus: Expr, index: str, where: str) -> str:
        """A list of rows (structs of every column of the select) for one focus item."""
        columns = select_columns(select, where)
        if "forEach" in select or "forEachOrNull" in select or "repeat" in select:
            return self._iterate(select, focus, index, where, columns)
        return self._product(select, focus, index, where)

    def _iterate(
        self,
        select: dict[str, Any],
        focus: Expr,
        index: str,
        where: str,
        columns: list[Column],
    ) -> str:
        body = {k: v for k, v in select.items() if k not in ("forEach", "forEachOrNull", "repeat")}
        if "repeat" in select:
            items = self._repeat(select["repeat"], focus, index, at(where, "repeat"))
        else:
            key = "forEach" if "forEach" in select else "forEachOrNull"
            items = self.expression(select[key], focus, index, at(where, key))
        y, k = self.names(), self.names()
        inner = self._product(body, Expr(f"[{y}]", items.typed), f"{k} - 1", where)

        def each(c: str) -> str:
            return f"flatten(list_transform({c}, lambda {y}, {k}: {inner}))"

        if "forEachOrNull" not in select:
            return each(items.sql)
        # no item: the select read against nothing, %rowIndex 0; a row of nulls if that is
        # no row at all (a forEach inside)
        nulls = ", ".join(f"{quote(c.name)}: NULL::{sql_type(c)}" for c in columns)
        alone = _let(
            self._product(body, Expr(EMPTY, items.typed), "0", where),
            lambda p: f"CASE WHEN len({p}) = 0 THEN [{{{nulls}}}] ELSE {p} END",
            self.names,
        )
        return _let(
            items.sql,
            lambda c: f"CASE WHEN len({c}) = 0 THEN {alone} ELSE {each(c)} END",
            self.names,
        )

    def _repeat(self, paths: list[str], focus: Expr, index: str, where: str) -> Expr:
        """Every node reached by following ``paths`` again and again, depth first."""

        def children(item: Expr) -> Expr:
            found = [self.expression(p, item, index, f"{where}[{i}]") for i, p in enumerate(paths)]
            sql = found[0].sql
            for more in found[1:]:
                sql = f"list_concat({sql}, {more.sql})"
            return Expr(sql, found[0].typed)

        first = children(focus)
        typed = first.typed
        message = f"{where}: nesting deeper than {REPEAT_DEPTH} levels is not followed"

        def expand(x: str, depth: int) -> str:
            below = children(Expr(f"[{x}]", typed))
            if depth == 0:
                return f"CASE WHEN len({below.sql}) > 0 THEN error({quote(message)}) ELSE [{x}] END"
            y = self.names()
            return (
                f"list_concat([{x}], flatten(list_transform({below.sql}, "
                f"lambda {y}: {expand(y, depth - 1)})))"
            )

        y = self.names()
        return Expr(
            f"flatten(list_transform({first.sql}, lambda {y}: {expand(y, REPEAT_DEPTH - 1)}))",
            typed,
        )

    def _product(self, select: dict[str, Any], focus: Expr, index: str, where: str) -> str:
        """The select's own columns, then every row of each nested select, then of its
        unionAll: the product of the three, for one focus."""
        own = select.get("column", [])
        fields: list[str] = []
        acc = ""
        if own:
            values = [
                f"{quote(c['name'])}: "
                + self.column(
                    Column(c["name"], c["path"], c.get("type"), c.get("collection", False)),
                    focus,
                    index,
                    at(where, f"column[{i}]"),
                )
                for i, c in enumerate(own)
            ]
            acc = "[{" + ", ".join(values) + "}]"
            fields = [c["name"] for c in own]
        parts: list[tuple[str, list[str]]] = []
        for i, inner in enumerate(select.get("select", [])):
            here = at(where, f"select[{i}]")
            parts.append(
                (
                    self.rows(inner, focus, index, here),
                    [c.name for c in select_columns(inner, here)],
                )
            )
        if "unionAll" in select:
            branches = [
                self.rows(branch, focus, index, at(where, f"unionAll[{i}]"))
                for i, branch in enumerate(select["unionAll"])
            ]
            sql = branches[0]
            for branch in branches[1:]:
                sql = f"list_concat({sql}, {branch})"
            names = [
                c.name for c in select_columns(select["unionAll"][0], at(where, "unionAll[0]"))
            ]
            parts.append((sql, names))
        for part, names in parts:
            if not acc:
                acc, fields = part, names
                continue
            a, b = self.names(), self.names()
            combined = ", ".join(
                [f"{quote(n)}: {a}[{quote(n)}]" for n in fields]
                + [f"{quote(n)}: {b}[{quote(n)}]" for n in names]
            )
            acc = _let(
                part,
                lambda p, acc=acc, combined=combined, a=a, b=b: (
                    f"flatten(list_transform({acc}, lambda {a}: list_transform({p}, "
                    f"lambda {b}: {{{combined}}})))"
                ),
                self.names,
            )
            fields = fields + names
        return acc

    def where_clause(self, focus: Expr) -> str:
        conditions = []
        for i, where in enumerate(self.view.get("where", [])):
            here = f"where[{i}].path"
            value = self.expression(where["path"], focus, "0", here)
            message = f"{here}: {where['path']!r} does not give a boolean"
            conditions.append(
                _let(
                    value.sql,
                    lambda c, message=message: (
                        f"CASE WHEN len({c}) = 0 THEN false WHEN len({c}) = 1 AND "
                        f"json_type({c}[1]) = 'BOOLEAN' THEN CAST({c}[1] AS BOOLEAN) "
                        f"ELSE error({quote(message)}) END"
                    ),
                    self.names,
                )
            )
        return " AND ".join(f"({c})" for c in conditions) or "true"


def compile_view(view: dict[str, Any], source: str = "resources") -> Compiled:
    """The SQL of a ViewDefinition over ``source``, a relation with a JSON column ``resource``."""
    check_view(view)
    compiler = _Compiler(view)
    kind = view["resource"]
    focus = Expr("[r]", Typed(kind, kind, kind))
    top = {"select": view["select"]}
    columns = tuple(select_columns(top, ""))
    rows = compiler.rows(top, focus, "0", "")
    where = compiler.where_clause(focus)
    sql = (
        f"SELECT row.* FROM (SELECT unnest({rows}) AS row FROM ("
        f"SELECT resource AS r FROM {source} WHERE resource->>'resourceType' = {quote(kind)}"
        f") WHERE {where})"
    )
    return Compiled(sql, columns, kind)
