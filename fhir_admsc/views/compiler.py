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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhirpathpy.parser import parse

from .. import r4
from .definition import Column, ViewError, at, check_view, constant_value, select_columns
from .dialects import DIALECTS, Dialect, quote

# How deep ``repeat`` follows its paths; deeper nesting stops the query with a message.
REPEAT_DEPTH = 12

INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


def base_type(column: Column) -> str:
    """The SQL type of a column's values: BOOLEAN, BIGINT, DOUBLE or VARCHAR (text)."""
    if column.type in INTEGER_TYPES:
        return "BIGINT"
    return {"boolean": "BOOLEAN", "decimal": "DOUBLE"}.get(column.type or "", "VARCHAR")


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
    """What an expression is compiled in: the dialect, the view's constants, the row index of
    the nearest iteration, the resource, and the expression's own text for messages."""

    d: Dialect
    constants: dict[str, tuple[Any, str]]
    index: str
    resource: str
    resource_type: str
    where: str
    text: str = ""
    names: Callable[[], str] = field(default=lambda: "v")

    def fail(self, message: str) -> ViewError:
        return ViewError(self.where, f"{message} (in {self.text!r})")

    def let(self, value: str, body: Callable[[str], str]) -> str:
        """``body`` applied to ``value``, evaluated once."""
        name = self.names()
        return self.d.let(value, name, body(name))

    def one(self, c: str) -> str:
        """A collection's single value; several stop the query."""
        message = f"{self.where}: {self.text!r} gives several values where one is expected"
        return f"CASE WHEN {self.d.size(c)} > 1 THEN {self.d.error(message)} ELSE {self.d.item(c, '1')} END"


def _step(collection: str, member: str, many: bool | None, primitive: bool, scope: Scope) -> str:
    d, x = scope.d, scope.names()
    value = d.member(x, member)
    if many is False:
        y = scope.names()
        return d.filter(d.transform(collection, [x], value), [y], f"{y} IS NOT NULL")
    if many is True:
        items = f"coalesce({d.as_array(value)}, {d.empty})"
        if primitive:  # a primitive array keeps a null where only an extension is
            y = scope.names()
            items = d.filter(items, [y], f"NOT {d.is_json_null(y)}")
        return d.flatten(d.transform(collection, [x], items))

    def spread(v: str) -> str:
        return (
            f"CASE WHEN {v} IS NULL OR {d.is_json_null(v)} THEN {d.empty} "
            f"WHEN {d.is_array(v)} THEN {d.as_array(v)} ELSE {d.array(v)} END"
        )

    return d.flatten(d.transform(collection, [x], scope.let(value, spread)))


def _navigate(source: Expr, name: str, scope: Scope) -> Expr:
    child = _child(source.typed, name)
    parts = [
        _step(source.sql, member, child.many, typed is not None and typed.code[:1].islower(), scope)
        for member, typed in child.members
    ]
    if not parts:
        return Expr(scope.d.empty, None)
    if child.choice:
        sql = parts[0]
        for part in parts[1:]:
            sql = scope.d.concat(sql, part)
        return Expr(sql, None, child.members, source.sql)
    return Expr(parts[0], child.members[0][1])


def _from_bool(boolean: str, scope: Scope) -> str:
    """A SQL boolean (NULL: unknown) as a FHIRPath collection (empty when unknown)."""
    b = scope.names()
    return scope.d.filter(scope.d.array(scope.d.to_json(boolean)), [b], f"{b} IS NOT NULL")


def _truth(expr: Expr, scope: Scope) -> str:
    """A collection as a SQL boolean: NULL when empty; a single non-boolean value is true."""
    d = scope.d
    message = f"{scope.where}: {scope.text!r} gives several values where one boolean is expected"

    def body(c: str) -> str:
        first = d.item(c, "1")
        return (
            f"CASE WHEN {d.size(c)} = 0 THEN NULL WHEN {d.size(c)} > 1 THEN {d.error(message)} "
            f"WHEN {d.is_boolean(first)} THEN {d.cast(first, 'BOOLEAN')} ELSE true END"
        )

    return scope.let(expr.sql, body)


def _boolean(sql: str) -> Expr:
    return Expr(sql, Typed("boolean", "boolean", "boolean"))


def _single_value(value: Any, code: str, scope: Scope) -> Expr:
    return Expr(scope.d.array(scope.d.json_literal(value)), Typed(code, code, code))


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
    if name == scope.resource_type and focus.sql == scope.d.array(scope.resource):
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
    d = scope.d
    left, index = (_compile(c, focus, scope) for c in node["children"])
    position = scope.let(
        index.sql,
        lambda i: f"CASE WHEN {d.size(i)} = 1 THEN {d.cast(d.item(i, '1'), 'BIGINT')} + 1 END",
    )
    return Expr(scope.let(position, lambda p: d.slice(left.sql, p, "1")), left.typed)


def _moment(node: Node, focus: Expr, scope: Scope) -> Expr:
    """A date, dateTime or time literal (@2020-01, @2020-01-01T10:00:00Z, @T10:00)."""
    text = node["terminalNodeText"][0].lstrip("@")
    code = "time" if text.startswith("T") else "dateTime" if "T" in text else "date"
    return _single_value(text.lstrip("T"), code, scope)


def _polarity(node: Node, focus: Expr, scope: Scope) -> Expr:
    operand = _compile(node["children"][0], focus, scope)
    if node["terminalNodeText"][0] == "+":
        return operand
    return _arithmetic("-", _single_value(0, "integer", scope), operand, scope)


def _binary_arithmetic(node: Node, focus: Expr, scope: Scope) -> Expr:
    left, right = (_compile(c, focus, scope) for c in node["children"])
    return _arithmetic(node["terminalNodeText"][0], left, right, scope)


def _union(node: Node, focus: Expr, scope: Scope) -> Expr:
    """``a | b``: the items of both, each once, in order."""
    d = scope.d
    left, right = (_compile(c, focus, scope) for c in node["children"])

    def distinct(c: str) -> str:
        x, k = scope.names(), scope.names()
        return d.filter(c, [x, k], f"NOT {d.seen_before(c, x, k)}")

    typed = left.typed if left.typed == right.typed else None
    return Expr(scope.let(d.concat(left.sql, right.sql), distinct), typed)


def _literal(node: Node, focus: Expr, scope: Scope) -> Expr:
    kind = node["type"]
    if kind == "NullLiteral":
        return Expr(scope.d.empty, None)
    text = node["terminalNodeText"][0]
    if kind == "StringLiteral":
        return _single_value(_unescape(text[1:-1]), "string", scope)
    if kind == "BooleanLiteral":
        return _single_value(text == "true", "boolean", scope)
    code = "decimal" if "." in text else "integer"
    return Expr(scope.d.array(scope.d.number_literal(text)), Typed(code, code, code))


_ESCAPES = {"'": "'", '"': '"', "`": "`", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match[1]
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, "\\" + code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)


def _constant(node: Node, focus: Expr, scope: Scope) -> Expr:
    name = _identifier(node["children"][0]["children"][0])
    if name == "rowIndex":
        return Expr(
            scope.d.array(scope.d.to_json(scope.index)), Typed("integer", "integer", "integer")
        )
    if name in ("resource", "rootResource"):
        root = scope.resource_type
        return Expr(scope.d.array(scope.resource), Typed(root, root, root))
    if name not in scope.constants:
        raise scope.fail(f"%{name} is not a constant of this view")
    value, code = scope.constants[name]
    return _single_value(value, code, scope)


def _pair(left: str, right: str, body: Callable[[str, str], str], scope: Scope) -> str:
    return scope.let(left, lambda a: scope.let(right, lambda b: body(a, b)))


def _either_empty(a: str, b: str, scope: Scope) -> str:
    return f"{scope.d.size(a)} = 0 OR {scope.d.size(b)} = 0"


def _equality(node: Node, focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    operator = node["terminalNodeText"][0]
    left, right = (_compile(c, focus, scope) for c in node["children"])
    if operator not in ("=", "!="):
        raise scope.fail(f"the operator {operator} is not supported")

    def body(a: str, b: str) -> str:
        x, i = scope.names(), scope.names()
        pairs = d.transform(a, [x, i], _equal(x, d.item(b, f"{d.position(i)} + 1"), d))
        same = f"{d.size(a)} = {d.size(b)} AND {d.all_true(pairs)}"
        if operator == "!=":
            same = f"NOT ({same})"
        return f"CASE WHEN {_either_empty(a, b, scope)} THEN {d.empty} ELSE {d.array(d.to_json(same))} END"

    return _boolean(_pair(left.sql, right.sql, body, scope))


def _equal(a: str, b: str, d: Dialect) -> str:
    return (
        f"CASE WHEN {d.is_number(a)} AND {d.is_number(b)} THEN {d.cast(a, 'DOUBLE')} = "
        f"{d.cast(b, 'DOUBLE')} ELSE {d.text(a)} = {d.text(b)} END"
    )


def _inequality(node: Node, focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    operator = node["terminalNodeText"][0]
    left, right = (_compile(c, focus, scope) for c in node["children"])

    def compare(x: str, y: str) -> str:
        return (
            f"CASE WHEN {d.is_number(x)} AND {d.is_number(y)} THEN {d.cast(x, 'DOUBLE')} "
            f"{operator} {d.cast(y, 'DOUBLE')} ELSE {d.text(x)} {operator} {d.text(y)} END"
        )

    def body(a: str, b: str) -> str:
        inner = _pair(scope.one(a), scope.one(b), compare, scope)
        return f"CASE WHEN {_either_empty(a, b, scope)} THEN {d.empty} ELSE {d.array(d.to_json(inner))} END"

    return _boolean(_pair(left.sql, right.sql, body, scope))


def _logic(node: Node, focus: Expr, scope: Scope) -> Expr:
    operator = node["terminalNodeText"][0]
    left, right = (_truth(_compile(c, focus, scope), scope) for c in node["children"])
    combined = {
        "and": f"({left}) AND ({right})",
        "or": f"({left}) OR ({right})",
        "xor": f"({left}) <> ({right})",
        "implies": f"(NOT ({left})) OR ({right})",
    }[operator]
    return _boolean(_from_bool(combined, scope))


def _arithmetic(operator: str, left: Expr, right: Expr, scope: Scope) -> Expr:
    d = scope.d
    if operator == "&":
        s = scope.names()
        texts = d.transform(d.concat(left.sql, right.sql), [s], d.text(s))
        return Expr(d.array(d.to_json(d.join(texts, "''"))), Typed("string", "string", "string"))
    if operator not in ("+", "-", "*", "/", "div", "mod"):
        raise scope.fail(f"the operator {operator} is not supported")
    sql_operator = {"div": "DIV", "mod": "%"}.get(operator, operator)

    def compute(a: str, b: str) -> str:
        integers = f"{d.is_integer(a)} AND {d.is_integer(b)}"
        exact = d.to_json(f"{d.cast(a, 'BIGINT')} {sql_operator} {d.cast(b, 'BIGINT')}")
        inexact = d.to_json(f"{d.cast(a, 'DOUBLE')} {sql_operator} {d.cast(b, 'DOUBLE')}")
        number = (
            inexact if operator == "/" else f"CASE WHEN {integers} THEN {exact} ELSE {inexact} END"
        )
        if operator == "+":
            text = d.to_json(f"{d.text(a)} || {d.text(b)}")
            return f"CASE WHEN {d.is_number(a)} AND {d.is_number(b)} THEN {number} ELSE {text} END"
        return number

    def body(a: str, b: str) -> str:
        value = _pair(scope.one(a), scope.one(b), compute, scope)
        return f"CASE WHEN {_either_empty(a, b, scope)} THEN {d.empty} ELSE {d.array(value)} END"

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
    "ExternalConstantTerm": _constant,
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

Function = Callable[[Expr, list[Any], Expr, Scope], Expr]


def _function(node: Node, source: Expr, focus: Expr, scope: Scope) -> Expr:
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


def _criteria(source: Expr, params: list[Any], scope: Scope) -> tuple[str, str]:
    """The variable and the SQL boolean of a per-item argument (where, exists, all)."""
    x = scope.names()
    inner = _compile(params[0], Expr(scope.d.array(x), source.typed), scope)
    return x, f"coalesce({_truth(inner, scope)}, false)"


def _where(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    x, holds = _criteria(source, params, scope)
    return Expr(scope.d.filter(source.sql, [x], holds), source.typed)


def _exists(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    if params:
        source = _where(source, params, focus, scope)
    d = scope.d
    return _boolean(d.array(d.to_json(f"{d.size(source.sql)} > 0")))


def _all(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    x, holds = _criteria(source, params, scope)
    return _boolean(d.array(d.to_json(d.all_true(d.transform(source.sql, [x], holds)))))


def _select(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    x = scope.names()
    projection = _compile(params[0], Expr(scope.d.array(x), source.typed), scope)
    return Expr(scope.d.flatten(scope.d.transform(source.sql, [x], projection.sql)), None)


def _empty(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    return _boolean(d.array(d.to_json(f"{d.size(source.sql)} = 0")))


def _first(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return Expr(scope.d.slice(source.sql, "1", "1"), source.typed)


def _last(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return Expr(scope.d.last(source.sql), source.typed)


def _count(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    return Expr(d.array(d.to_json(d.size(source.sql))), Typed("integer", "integer", "integer"))


def _not(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return _boolean(_from_bool(f"NOT ({_truth(source, scope)})", scope))


def _join(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    separator = "''"
    if params:
        value = _compile(params[0], focus, scope)
        separator = f"coalesce({d.text(scope.let(value.sql, lambda s: d.item(s, '1')))}, '')"
    x = scope.names()
    texts = d.transform(source.sql, [x], d.text(x))
    return Expr(d.array(d.to_json(d.join(texts, separator))), Typed("string", "string", "string"))


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
    d = scope.d
    wanted = _type_name(params[0], scope)
    wanted = _SYSTEM.get(wanted, wanted)
    if source.choices:
        for member, typed in source.choices:
            if typed is not None and typed.code == wanted:
                primitive = wanted[:1].islower()
                return Expr(_step(source.parent, member, False, primitive, scope), typed)
        return Expr(d.empty, None)
    if source.typed is None:
        raise scope.fail(
            f"ofType({wanted}) of values whose type is not known from the R4 definitions"
        )
    if source.typed.code == wanted:
        return source
    if source.typed.code in ("Resource", "DomainResource") and r4.is_resource_type(wanted):
        x = scope.names()
        kind = d.text(d.member(x, "resourceType"))
        return Expr(
            d.filter(source.sql, [x], f"{kind} = {quote(wanted)}"), Typed(wanted, wanted, wanted)
        )
    return Expr(d.empty, None)


def _extension(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    url = _compile(params[0], focus, scope)
    extensions = _navigate(
        Expr(source.sql, source.typed or Typed("Element", "Element", "Element")), "extension", scope
    )
    x = scope.names()
    wanted = d.text(scope.let(url.sql, lambda u: d.item(u, "1")))
    return Expr(
        d.filter(extensions.sql, [x], f"{d.text(d.member(x, 'url'))} = {wanted}"),
        Typed("Extension", "Extension", "Extension"),
    )


def _resource_key(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    return Expr(_step(source.sql, "id", False, True, scope), Typed("string", "string", "string"))


# Type/id at the end of a reference (relative or absolute, with or without a version); no
# backslashes, which engines read differently inside SQL strings
_REFERENCE = "(^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9.-]{1,64})(/_history/[^/]+)?$"


def _reference_key(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
    d = scope.d
    wanted = _type_name(params[0], scope) if params else None
    x, y = scope.names(), scope.names()
    reference = d.text(d.member(x, "reference"))
    keep = d.matches(reference, quote(_REFERENCE))
    if wanted:
        keep += f" AND regexp_extract({reference}, {quote(_REFERENCE)}, 2) = {quote(wanted)}"
    key = f"regexp_extract({d.text(d.member(y, 'reference'))}, {quote(_REFERENCE)}, 3)"
    return Expr(
        d.transform(d.filter(source.sql, [x], f"coalesce({keep}, false)"), [y], d.to_json(key)),
        Typed("string", "string", "string"),
    )


def _boundary(high: bool) -> Function:
    def run(source: Expr, params: list[Any], focus: Expr, scope: Scope) -> Expr:
        code = source.typed.code if source.typed else ""
        make = {
            "decimal": _decimal_boundary,
            "integer": _decimal_boundary,
            "date": _date_boundary,
            "dateTime": _datetime_boundary,
            "instant": _datetime_boundary,
            "time": _time_boundary,
        }.get(code)
        if make is None:
            raise scope.fail(
                f"{'high' if high else 'low'}Boundary() of values whose type "
                f"({code or 'not known'}) is not decimal, date, dateTime, instant or time"
            )
        x = scope.names()
        body = scope.d.to_json(make(scope.d.text(x), high, scope.d))
        return Expr(scope.d.transform(source.sql, [x], body), Typed(code, code, code))

    return run


def _decimal_boundary(text: str, high: bool, d: Dialect) -> str:
    """Half a unit of the last digit given, either way (1.0: 0.95 to 1.05)."""
    digits = f"CASE WHEN contains({text}, '.') THEN length(split_part({text}, '.', 2)) ELSE 0 END"
    sign = "+" if high else "-"
    return f"CAST({text} AS DOUBLE) {sign} 0.5 * pow(10, -({digits}))"


def _date_boundary(text: str, high: bool, d: Dialect) -> str:
    if not high:
        return (
            f"CASE length({text}) WHEN 4 THEN {text} || '-01-01' "
            f"WHEN 7 THEN {text} || '-01' ELSE {text} END"
        )
    return (
        f"CASE length({text}) WHEN 4 THEN {text} || '-12-31' "
        f"WHEN 7 THEN {d.month_end(text)} ELSE {text} END"
    )


def _part(text: str, pattern: str, group: int = 1) -> str:
    return f"regexp_extract({text}, {quote(pattern)}, {group})"


def _or_else(value: str, default: str) -> str:
    return f"CASE WHEN {value} = '' THEN {quote(default)} ELSE {value} END"


def _datetime_boundary(text: str, high: bool, d: Dialect) -> str:
    day = _date_boundary(_part(text, "^[0-9-]+", 0), high, d)
    clock = _or_else(_part(text, "T([0-9:]+)"), "23:59:59" if high else "00:00:00")
    millis = _or_else(_part(text, "([.][0-9]+)"), ".999" if high else ".000")
    zone = _or_else(_part(text, "(Z|[+-][0-9]{2}:[0-9]{2})$"), "-12:00" if high else "+14:00")
    return f"{day} || 'T' || {clock} || {millis} || {zone}"


def _time_boundary(text: str, high: bool, d: Dialect) -> str:
    clock = _part(text, "^[0-9:]+", 0)
    whole = (
        f"CASE length({clock}) WHEN 2 THEN {clock} || {quote(':59:59' if high else ':00:00')} "
        f"WHEN 5 THEN {clock} || {quote(':59' if high else ':00')} ELSE {clock} END"
    )
    millis = _or_else(_part(text, "([.][0-9]+)"), ".999" if high else ".000")
    return f"{whole} || {millis}"


_FUNCTIONS: dict[str, tuple[tuple[int, ...], Function]] = {
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


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        tree: dict[str, Any] = parse(text)
    except Exception as e:  # the ANTLR parser raises several kinds, none of them ours
        raise ViewError(where, f"{text!r} is not valid FHIRPath ({type(e).__name__})") from e
    return tree


class _Compiler:
    def __init__(self, view: dict[str, Any], dialect: Dialect) -> None:
        self.view = view
        self.d = dialect
        self.resource_type = view["resource"]
        self.constants: dict[str, tuple[Any, str]] = {}
        for i, constant in enumerate(view.get("constant", [])):
            name, value, code = constant_value(constant, f"constant[{i}]")
            self.constants[name] = (value, code)
        counter = itertools.count(1)
        self.names = lambda: f"v{next(counter)}"

    def scope(self, index: str, where: str, text: str = "") -> Scope:
        return Scope(
            self.d, self.constants, index, "r", self.resource_type, where, text, names=self.names
        )

    def expression(self, text: str, focus: Expr, index: str, where: str) -> Expr:
        return _compile(_parse(text, where), focus, self.scope(index, where, text))

    def sql_type(self, column: Column) -> str:
        return self.d.sql_type(
            self.d.text_type if base_type(column) == "VARCHAR" else base_type(column),
            column.collection,
        )

    def column(self, column: Column, focus: Expr, index: str, where: str) -> str:
        d = self.d
        value = self.expression(column.path, focus, index, where)
        base = base_type(column)

        def cast(v: str) -> str:
            return d.text(v) if base == "VARCHAR" else d.cast(v, base)

        if column.collection:
            x = self.names()
            return d.transform(value.sql, [x], cast(x))
        message = (
            f"{where}: column {column.name!r} ({column.path!r}) gives several values; "
            "a column that is not a collection holds one"
        )
        return self.scope(index, where).let(
            value.sql,
            lambda c: (
                f"CASE WHEN {d.size(c)} > 1 THEN {d.error(message)} ELSE {cast(d.item(c, '1'))} END"
            ),
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
        d = self.d
        body = {k: v for k, v in select.items() if k not in ("forEach", "forEachOrNull", "repeat")}
        if "repeat" in select:
            items = self._repeat(select["repeat"], focus, index, at(where, "repeat"))
        else:
            key = "forEach" if "forEach" in select else "forEachOrNull"
            items = self.expression(select[key], focus, index, at(where, key))
        y, k = self.names(), self.names()
        inner = self._product(body, Expr(d.array(y), items.typed), d.position(k), where)

        def each(c: str) -> str:
            return d.flatten(d.transform(c, [y, k], inner))

        if "forEachOrNull" not in select:
            return each(items.sql)
        # no item: the select read against nothing, %rowIndex 0; a row of nulls if that is
        # no row at all (a forEach inside)
        nulls = d.struct([(c.name, d.null(self.sql_type(c))) for c in columns])
        scope = self.scope(index, where)
        alone = scope.let(
            self._product(body, Expr(d.empty, items.typed), "0", where),
            lambda p: f"CASE WHEN {d.size(p)} = 0 THEN {d.array(nulls)} ELSE {p} END",
        )
        return scope.let(
            items.sql, lambda c: f"CASE WHEN {d.size(c)} = 0 THEN {alone} ELSE {each(c)} END"
        )

    def _repeat(self, paths: list[str], focus: Expr, index: str, where: str) -> Expr:
        """Every node reached by following ``paths`` again and again, depth first."""
        d = self.d

        def children(item: Expr) -> Expr:
            found = [self.expression(p, item, index, f"{where}[{i}]") for i, p in enumerate(paths)]
            sql = found[0].sql
            for more in found[1:]:
                sql = d.concat(sql, more.sql)
            return Expr(sql, found[0].typed)

        first = children(focus)
        typed = first.typed
        message = f"{where}: nesting deeper than {REPEAT_DEPTH} levels is not followed"

        def expand(x: str, depth: int) -> str:
            below = children(Expr(d.array(x), typed))
            if depth == 0:
                return f"CASE WHEN {d.size(below.sql)} > 0 THEN {d.error(message)} ELSE {d.array(x)} END"
            y = self.names()
            return d.concat(
                d.array(x), d.flatten(d.transform(below.sql, [y], expand(y, depth - 1)))
            )

        y = self.names()
        return Expr(d.flatten(d.transform(first.sql, [y], expand(y, REPEAT_DEPTH - 1))), typed)

    def _own_columns(self, select: dict[str, Any], focus: Expr, index: str, where: str) -> str:
        values = [
            (
                c["name"],
                self.column(
                    Column(c["name"], c["path"], c.get("type"), c.get("collection", False)),
                    focus,
                    index,
                    at(where, f"column[{i}]"),
                ),
            )
            for i, c in enumerate(select.get("column", []))
        ]
        return self.d.array(self.d.struct(values)) if values else ""

    def _product(self, select: dict[str, Any], focus: Expr, index: str, where: str) -> str:
        """The select's own columns, then every row of each nested select, then of its
        unionAll: the product of the three, for one focus."""
        d = self.d
        acc = self._own_columns(select, focus, index, where)
        fields = [c["name"] for c in select.get("column", [])]
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
                sql = d.concat(sql, branch)
            first = select_columns(select["unionAll"][0], at(where, "unionAll[0]"))
            parts.append((sql, [c.name for c in first]))
        for part, names in parts:
            if not acc:
                acc, fields = part, names
                continue
            a, b = self.names(), self.names()
            combined = d.struct(
                [(n, d.field(a, n)) for n in fields] + [(n, d.field(b, n)) for n in names]
            )
            acc = self.scope(index, where).let(
                part,
                lambda p, acc=acc, combined=combined, a=a, b=b: d.flatten(
                    d.transform(acc, [a], d.transform(p, [b], combined))
                ),
            )
            fields = fields + names
        return acc

    def where_clause(self, focus: Expr) -> str:
        d = self.d
        conditions = []
        for i, where in enumerate(self.view.get("where", [])):
            here = f"where[{i}].path"
            value = self.expression(where["path"], focus, "0", here)
            message = f"{here}: {where['path']!r} does not give a boolean"

            def check(c: str, message: str = message) -> str:
                first = d.item(c, "1")
                return (
                    f"CASE WHEN {d.size(c)} = 0 THEN false WHEN {d.size(c)} = 1 AND "
                    f"{d.is_boolean(first)} THEN {d.cast(first, 'BOOLEAN')} ELSE {d.error(message)} END"
                )

            conditions.append(self.scope("0", here).let(value.sql, check))
        return " AND ".join(f"({c})" for c in conditions) or "true"


def compile_view(
    view: dict[str, Any], source: str = "resources", engine: str = "duckdb"
) -> Compiled:
    """The SQL of a ViewDefinition over ``source``, a relation with a JSON column ``resource``
    (DuckDB's JSON, Spark's VARIANT), in the SQL of ``engine``."""
    check_view(view)
    dialect = DIALECTS[engine]
    compiler = _Compiler(view, dialect)
    kind = view["resource"]
    focus = Expr(dialect.array("r"), Typed(kind, kind, kind))
    top = {"select": view["select"]}
    columns = tuple(select_columns(top, ""))
    rows = compiler.rows(top, focus, "0", "")
    where = compiler.where_clause(focus)
    kind_of = dialect.text(dialect.member("resource", "resourceType"))
    relation = f"(SELECT resource AS r FROM {source} WHERE {kind_of} = {quote(kind)}) WHERE {where}"
    return Compiled(dialect.rows(rows, relation), columns, kind)
