"""The SQL each engine speaks for what the view compiler needs: lists with lambdas, JSON values
(DuckDB's JSON type, Spark's VARIANT), structs and errors.

A FHIRPath collection is a list of JSON values in both; the differences are in names and in
counting (DuckDB's list indexes and lambda indexes start at 1, Spark's lambda indexes at 0).
"""

from __future__ import annotations

import json
from typing import Any


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class Dialect:
    """The SQL of one engine. Methods return SQL text; arguments are SQL text."""

    name = ""
    text_type = "VARCHAR"
    empty = ""

    def lam(self, params: list[str], body: str) -> str:
        raise NotImplementedError

    def array(self, *items: str) -> str:
        raise NotImplementedError

    def transform(self, c: str, params: list[str], body: str) -> str:
        raise NotImplementedError

    def filter(self, c: str, params: list[str], body: str) -> str:
        raise NotImplementedError

    def flatten(self, c: str) -> str:
        return f"flatten({c})"

    def concat(self, a: str, b: str) -> str:
        raise NotImplementedError

    def size(self, c: str) -> str:
        raise NotImplementedError

    def item(self, c: str, number: str) -> str:
        """The ``number``-th item (from 1), NULL when there is none."""
        raise NotImplementedError

    def slice(self, c: str, start: str, length: str) -> str:
        """Up to ``length`` items from the ``start``-th (from 1)."""
        raise NotImplementedError

    def last(self, c: str) -> str:
        raise NotImplementedError

    def position(self, index: str) -> str:
        """A lambda's index variable counted from 0."""
        raise NotImplementedError

    def let(self, value: str, name: str, body: str) -> str:
        """``body`` with ``name`` bound to ``value``, evaluated once."""
        return self.item(self.transform(self.array(value), [name], body), "1")

    def member(self, x: str, name: str) -> str:
        """The JSON member ``name`` of ``x``, NULL when missing."""
        raise NotImplementedError

    def as_array(self, v: str) -> str:
        """A JSON array as a list; NULL when ``v`` is missing."""
        raise NotImplementedError

    def is_array(self, v: str) -> str:
        raise NotImplementedError

    def is_json_null(self, v: str) -> str:
        raise NotImplementedError

    def is_boolean(self, v: str) -> str:
        raise NotImplementedError

    def is_number(self, v: str) -> str:
        raise NotImplementedError

    def is_integer(self, v: str) -> str:
        raise NotImplementedError

    def text(self, v: str) -> str:
        """A JSON scalar as text (a string without its quotes; an object as JSON)."""
        raise NotImplementedError

    def to_json(self, value: str) -> str:
        """A SQL value as a JSON value."""
        raise NotImplementedError

    def json_literal(self, value: Any) -> str:
        raise NotImplementedError

    def number_literal(self, text: str) -> str:
        raise NotImplementedError

    def cast(self, v: str, base: str) -> str:
        """A JSON value as BOOLEAN, BIGINT or DOUBLE."""
        return f"CAST({v} AS {base})"

    def error(self, message: str) -> str:
        raise NotImplementedError

    def struct(self, fields: list[tuple[str, str]]) -> str:
        raise NotImplementedError

    def field(self, s: str, name: str) -> str:
        raise NotImplementedError

    def sql_type(self, base: str, collection: bool) -> str:
        raise NotImplementedError

    def null(self, sql_type: str) -> str:
        return f"CAST(NULL AS {sql_type})"

    def all_true(self, c: str) -> str:
        """Whether every boolean of ``c`` is true (true when empty)."""
        raise NotImplementedError

    def join(self, texts: str, separator: str) -> str:
        raise NotImplementedError

    def seen_before(self, c: str, x: str, index: str) -> str:
        """Whether an item equal to ``x`` comes before position ``index`` (a lambda index)."""
        raise NotImplementedError

    def matches(self, text: str, pattern: str) -> str:
        raise NotImplementedError

    def month_end(self, month: str) -> str:
        """The last day (YYYY-MM-DD) of the month ``month`` (YYYY-MM)."""
        raise NotImplementedError

    def rows(self, rows: str, relation: str) -> str:
        """A query of every row (struct) of the lists ``rows`` over ``relation``."""
        raise NotImplementedError


class DuckDB(Dialect):
    name = "duckdb"
    text_type = "VARCHAR"
    empty = "[]::JSON[]"
    _numbers = "('BIGINT', 'UBIGINT', 'HUGEINT', 'UHUGEINT', 'DOUBLE')"
    _integers = "('BIGINT', 'UBIGINT', 'HUGEINT', 'UHUGEINT')"

    def lam(self, params: list[str], body: str) -> str:
        return f"lambda {', '.join(params)}: {body}"

    def array(self, *items: str) -> str:
        return f"[{', '.join(items)}]"

    def transform(self, c: str, params: list[str], body: str) -> str:
        return f"list_transform({c}, {self.lam(params, body)})"

    def filter(self, c: str, params: list[str], body: str) -> str:
        return f"list_filter({c}, {self.lam(params, body)})"

    def concat(self, a: str, b: str) -> str:
        return f"list_concat({a}, {b})"

    def size(self, c: str) -> str:
        return f"len({c})"

    def item(self, c: str, number: str) -> str:
        return f"{c}[{number}]"

    def slice(self, c: str, start: str, length: str) -> str:
        return f"list_slice({c}, {start}, {start} + {length} - 1)"

    def last(self, c: str) -> str:
        return f"list_slice({c}, -1, -1)"

    def position(self, index: str) -> str:
        return f"({index} - 1)"

    def member(self, x: str, name: str) -> str:
        return f"json_extract({x}, {quote(f'$.{json.dumps(name)}')})"

    def as_array(self, v: str) -> str:
        return f"CAST({v} AS JSON[])"

    def is_array(self, v: str) -> str:
        return f"json_type({v}) = 'ARRAY'"

    def is_json_null(self, v: str) -> str:
        return f"json_type({v}) = 'NULL'"

    def is_boolean(self, v: str) -> str:
        return f"json_type({v}) = 'BOOLEAN'"

    def is_number(self, v: str) -> str:
        return f"json_type({v}) IN {self._numbers}"

    def is_integer(self, v: str) -> str:
        return f"json_type({v}) IN {self._integers}"

    def text(self, v: str) -> str:
        return f"({v}->>'$')"

    def to_json(self, value: str) -> str:
        return f"to_json({value})"

    def json_literal(self, value: Any) -> str:
        return f"{quote(json.dumps(value, ensure_ascii=False))}::JSON"

    def number_literal(self, text: str) -> str:
        return f"{quote(text)}::JSON"

    def error(self, message: str) -> str:
        return f"error({quote(message)})"

    def struct(self, fields: list[tuple[str, str]]) -> str:
        return "{" + ", ".join(f"{quote(name)}: {value}" for name, value in fields) + "}"

    def field(self, s: str, name: str) -> str:
        return f"{s}[{quote(name)}]"

    def sql_type(self, base: str, collection: bool) -> str:
        return f"{base}[]" if collection else base

    def all_true(self, c: str) -> str:
        return f"coalesce(list_bool_and({c}), true)"

    def join(self, texts: str, separator: str) -> str:
        return f"array_to_string({texts}, {separator})"

    def seen_before(self, c: str, x: str, index: str) -> str:
        return f"list_contains(list_slice({c}, 1, {index} - 1), {x})"

    def matches(self, text: str, pattern: str) -> str:
        return f"regexp_matches({text}, {pattern})"

    def month_end(self, month: str) -> str:
        return f"strftime(last_day(CAST({month} || '-01' AS DATE)), '%Y-%m-%d')"

    def rows(self, rows: str, relation: str) -> str:
        return f"SELECT row.* FROM (SELECT unnest({rows}) AS row FROM {relation})"


class Spark(Dialect):
    """Spark SQL 4 (VARIANT for JSON; ANSI mode, so out-of-range reads use try_ functions)."""

    name = "spark"
    text_type = "STRING"
    empty = "CAST(array() AS ARRAY<VARIANT>)"
    _numbers = "('BIGINT', 'INT', 'SMALLINT', 'TINYINT', 'DOUBLE', 'FLOAT')"

    def lam(self, params: list[str], body: str) -> str:
        names = params[0] if len(params) == 1 else f"({', '.join(params)})"
        return f"{names} -> {body}"

    def array(self, *items: str) -> str:
        return f"array({', '.join(items)})"

    def transform(self, c: str, params: list[str], body: str) -> str:
        return f"transform({c}, {self.lam(params, body)})"

    def filter(self, c: str, params: list[str], body: str) -> str:
        return f"filter({c}, {self.lam(params, body)})"

    def concat(self, a: str, b: str) -> str:
        return f"concat({a}, {b})"

    def size(self, c: str) -> str:
        return f"size({c})"

    def item(self, c: str, number: str) -> str:
        return f"try_element_at({c}, {number})"

    def slice(self, c: str, start: str, length: str) -> str:
        return (
            f"CASE WHEN {start} IS NULL OR {start} < 1 OR {start} > size({c}) THEN {self.empty} "
            f"ELSE slice({c}, {start}, {length}) END"
        )

    def last(self, c: str) -> str:
        return f"CASE WHEN size({c}) = 0 THEN {c} ELSE slice({c}, -1, 1) END"

    def position(self, index: str) -> str:
        return index

    def member(self, x: str, name: str) -> str:
        return f"try_variant_get({x}, {quote(f'$[{json.dumps(name)}]')})"

    def as_array(self, v: str) -> str:
        return f"try_variant_get({v}, '$', 'ARRAY<VARIANT>')"

    def _kind(self, v: str) -> str:
        return f"schema_of_variant({v})"

    def is_array(self, v: str) -> str:
        return f"startswith({self._kind(v)}, 'ARRAY')"

    def is_json_null(self, v: str) -> str:
        return f"is_variant_null({v})"

    def is_boolean(self, v: str) -> str:
        return f"{self._kind(v)} = 'BOOLEAN'"

    def is_number(self, v: str) -> str:
        return f"({self._kind(v)} IN {self._numbers} OR startswith({self._kind(v)}, 'DECIMAL'))"

    def is_integer(self, v: str) -> str:
        return (
            f"({self._kind(v)} IN ('BIGINT', 'INT', 'SMALLINT', 'TINYINT') OR "
            f"startswith({self._kind(v)}, 'DECIMAL') AND endswith({self._kind(v)}, ',0)'))"
        )

    def text(self, v: str) -> str:
        return f"try_variant_get({v}, '$', 'STRING')"

    def to_json(self, value: str) -> str:
        return f"CAST({value} AS VARIANT)"

    def json_literal(self, value: Any) -> str:
        return f"parse_json({quote(json.dumps(value, ensure_ascii=False))})"

    def number_literal(self, text: str) -> str:
        return f"parse_json({quote(text)})"

    def cast(self, v: str, base: str) -> str:
        return f"try_variant_get({v}, '$', {quote(base)})"

    def error(self, message: str) -> str:
        return f"raise_error({quote(message)})"

    def struct(self, fields: list[tuple[str, str]]) -> str:
        return "named_struct(" + ", ".join(f"{quote(n)}, {v}" for n, v in fields) + ")"

    def field(self, s: str, name: str) -> str:
        return f"{s}.`{name}`"

    def sql_type(self, base: str, collection: bool) -> str:
        base = "STRING" if base == "VARCHAR" else base
        return f"ARRAY<{base}>" if collection else base

    def all_true(self, c: str) -> str:
        return f"forall({c}, b -> coalesce(b, false))"

    def join(self, texts: str, separator: str) -> str:
        return f"array_join({texts}, {separator})"

    def seen_before(self, c: str, x: str, index: str) -> str:
        return f"exists(slice({c}, 1, {index}), y -> to_json(y) = to_json({x}))"

    def matches(self, text: str, pattern: str) -> str:
        return f"({text} RLIKE {pattern})"

    def month_end(self, month: str) -> str:
        return f"date_format(last_day(to_date({month} || '-01')), 'yyyy-MM-dd')"

    def rows(self, rows: str, relation: str) -> str:
        return f"SELECT inline({rows}) FROM {relation}"


DIALECTS: dict[str, Dialect] = {"duckdb": DuckDB(), "spark": Spark()}
