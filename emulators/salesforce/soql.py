"""The SOQL subset the engine needs.

    SELECT f1, f2, Rel__r.Field | COUNT() FROM Obj
      [WHERE cond]  cond: field op value | field [NOT] IN (v, ...) | field LIKE 'a%' | NOT c | c AND c | c OR c | (c)
      [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]

op is one of = != <> < <= > >=; values are 'strings', numbers, true/false, null and date or datetime
literals. String comparison is case-insensitive, as in Salesforce. Errors carry Salesforce's codes:
MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE (all HTTP 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ids
from . import schema as s
from .errors import SFError, malformed_query

TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc", "limit"}
KEYWORDS |= {"offset", "nulls", "first", "last", "null", "true", "false", "count"}


@dataclass
class Token:
    kind: str
    text: str


@dataclass
class Path:
    parts: list[str]  # canonical names: relationship names then the final field
    objects: list[s.ObjectDef]  # object of each hop (len == len(parts))

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass
class Cond:
    kind: str  # "cmp", "in", "like", "and", "or", "not"
    path: Path | None = None
    op: str = ""
    value: Any = None
    values: list[Any] = field(default_factory=list)
    negate: bool = False
    children: list[Cond] = field(default_factory=list)


@dataclass
class Query:
    obj: s.ObjectDef
    fields: list[Path]
    count_only: bool = False
    where: Cond | None = None
    order: list[tuple[Path, bool, bool | None]] = field(default_factory=list)  # path, descending, nulls_first
    limit: int | None = None
    offset: int = 0


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise malformed_query(f"unexpected token: '{text[pos:].split()[0]}'")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "ident" and value.lower() in KEYWORDS:
            kind = "kw"
        tokens.append(Token(kind, value))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class Parser:
    def __init__(self, schema: s.Schema, text: str) -> None:
        self.schema = schema
        self.tokens = tokenize(text)
        self.pos = 0

    # token helpers
    def peek(self, offset: int = 0) -> Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "kw" and tok.text.lower() == word

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise malformed_query("unexpected end of query")
        self.pos += 1
        return tok

    def expect_kw(self, word: str) -> None:
        tok = self.take()
        if tok.kind != "kw" or tok.text.lower() != word:
            raise malformed_query(f"unexpected token: '{tok.text}'")

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise malformed_query(f"unexpected token: '{tok.text}'")

    # grammar
    def parse(self) -> Query:
        self.expect_kw("select")
        raw_fields: list[str] = []
        count_only = False
        if self.is_kw("count"):
            self.take()
            self.expect("(")
            self.expect(")")
            count_only = True
        else:
            while True:
                tok = self.take()
                if tok.kind != "ident":
                    raise malformed_query(f"unexpected token: '{tok.text}'")
                raw_fields.append(tok.text)
                if self.peek() is not None and self.peek().text == ",":
                    self.take()
                    continue
                break
        self.expect_kw("from")
        obj_tok = self.take()
        obj = self.schema.get(obj_tok.text)
        if obj is None:
            raise SFError(
                "INVALID_TYPE",
                f"sObject type '{obj_tok.text}' is not supported. If you are attempting to use a custom object, "
                "be sure to append the '__c' after the entity name.",
            )
        query = Query(obj=obj, fields=[self.path(obj, f) for f in raw_fields], count_only=count_only)
        if self.is_kw("where"):
            self.take()
            query.where = self.condition(obj)
        if self.is_kw("order"):
            self.take()
            self.expect_kw("by")
            query.order = self.order(obj)
        if self.is_kw("limit"):
            self.take()
            query.limit = self.integer()
        if self.is_kw("offset"):
            self.take()
            query.offset = self.integer()
        if self.peek() is not None:
            raise malformed_query(f"unexpected token: '{self.peek().text}'")
        return query

    def integer(self) -> int:
        tok = self.take()
        if tok.kind != "number" or not tok.text.isdigit():
            raise malformed_query(f"unexpected token: '{tok.text}'")
        return int(tok.text)

    def path(self, obj: s.ObjectDef, text: str) -> Path:
        parts = text.split(".")
        if parts[0].lower() == obj.name.lower() and len(parts) > 1:
            parts = parts[1:]
        names: list[str] = []
        objects: list[s.ObjectDef] = []
        current = obj
        for i, part in enumerate(parts):
            objects.append(current)
            if i == len(parts) - 1:
                fdef = current.get_field(part)
                if fdef is None:
                    raise no_such_column(part, current)
                names.append(fdef.name)
            else:
                rel = current.relationship(part)
                target = self.schema.get(rel.reference_to or "") if rel else None
                if rel is None or target is None:
                    raise SFError(
                        "INVALID_FIELD",
                        f"Didn't understand relationship '{part}' in field path. If you are attempting to use a "
                        "custom relationship, be sure to append the '__r' after the custom relationship name.",
                    )
                names.append(rel.relationship_name or part)
                current = target
        return Path(names, objects)

    def condition(self, obj: s.ObjectDef) -> Cond:
        left = self.conjunction(obj)
        children = [left]
        while self.is_kw("or"):
            self.take()
            children.append(self.conjunction(obj))
        return left if len(children) == 1 else Cond("or", children=children)

    def conjunction(self, obj: s.ObjectDef) -> Cond:
        children = [self.negation(obj)]
        while self.is_kw("and"):
            self.take()
            children.append(self.negation(obj))
        return children[0] if len(children) == 1 else Cond("and", children=children)

    def negation(self, obj: s.ObjectDef) -> Cond:
        if self.is_kw("not"):
            self.take()
            return Cond("not", children=[self.negation(obj)])
        if self.peek() is not None and self.peek().text == "(":
            self.take()
            cond = self.condition(obj)
            self.expect(")")
            return cond
        tok = self.take()
        if tok.kind != "ident":
            raise malformed_query(f"unexpected token: '{tok.text}'")
        path = self.path(obj, tok.text)
        if self.is_kw("not") and self.is_kw("in", 1):
            self.take()
            self.take()
            return Cond("in", path=path, values=self.value_list(), negate=True)
        if self.is_kw("in"):
            self.take()
            return Cond("in", path=path, values=self.value_list())
        if self.is_kw("like"):
            self.take()
            value = self.value()
            if not isinstance(value, str):
                raise malformed_query("LIKE operator only valid on string fields")
            return Cond("like", path=path, value=value)
        op = self.take()
        if op.kind != "op":
            raise malformed_query(f"unexpected token: '{op.text}'")
        return Cond("cmp", path=path, op=op.text, value=self.value())

    def value_list(self) -> list[Any]:
        self.expect("(")
        values = [self.value()]
        while self.peek() is not None and self.peek().text == ",":
            self.take()
            values.append(self.value())
        self.expect(")")
        return values

    def value(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1])
        if tok.kind == "number":
            return float(tok.text)
        if tok.kind in ("date", "datetime"):
            return tok.text
        if tok.kind == "kw" and tok.text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[tok.text.lower()]
        raise malformed_query(f"unexpected token: '{tok.text}'")

    def order(self, obj: s.ObjectDef) -> list[tuple[Path, bool, bool | None]]:
        items = []
        while True:
            tok = self.take()
            if tok.kind != "ident":
                raise malformed_query(f"unexpected token: '{tok.text}'")
            path = self.path(obj, tok.text)
            desc = False
            nulls_first: bool | None = None
            if self.is_kw("asc") or self.is_kw("desc"):
                desc = self.take().text.lower() == "desc"
            if self.is_kw("nulls"):
                self.take()
                nulls_first = self.take().text.lower() == "first"
            items.append((path, desc, nulls_first))
            if self.peek() is not None and self.peek().text == ",":
                self.take()
                continue
            return items


def no_such_column(name: str, obj: s.ObjectDef) -> SFError:
    return SFError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a custom field, be sure to "
        "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names.",
    )


def parse(schema: s.Schema, text: str) -> Query:
    return Parser(schema, text).parse()


# ---------------------------------------------------------------------- evaluation
Resolver = Callable[[str, str], dict[str, Any] | None]  # (object name, id) -> live record


def _follow(record: dict[str, Any], path: Path, resolve: Resolver) -> Any:
    current: dict[str, Any] | None = record
    for i, part in enumerate(path.parts):
        if current is None:
            return None
        if i == len(path.parts) - 1:
            return current.get(part)
        rel = path.objects[i].relationship(part)
        target = path.objects[i + 1]
        ref_id = current.get(rel.name) if rel else None
        current = resolve(target.name, ref_id) if ref_id else None
    return None


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        as_id = ids.normalize(value) if len(value) in (15, 18) else None
        return (as_id or value).casefold()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def _like(value: Any, pattern: str) -> bool:
    if not isinstance(value, str):
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in ("=", "!=", "<>"):
        equal = _norm(left) == _norm(right)
        return equal if op == "=" else not equal
    if left is None or right is None:
        return False
    a, b = _norm(left), _norm(right)
    try:
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    except TypeError:
        return False


def matches(cond: Cond | None, record: dict[str, Any], resolve: Resolver) -> bool:
    if cond is None:
        return True
    if cond.kind == "and":
        return all(matches(c, record, resolve) for c in cond.children)
    if cond.kind == "or":
        return any(matches(c, record, resolve) for c in cond.children)
    if cond.kind == "not":
        return not matches(cond.children[0], record, resolve)
    value = _follow(record, cond.path, resolve)
    if cond.kind == "in":
        found = _norm(value) in {_norm(v) for v in cond.values}
        return found != cond.negate
    if cond.kind == "like":
        return _like(value, cond.value)
    return _compare(value, cond.op, cond.value)


def _sort_key(value: Any) -> tuple[int, Any]:
    norm = _norm(value)
    if isinstance(norm, bool):
        return (1, int(norm))
    if isinstance(norm, float):
        return (1, norm)
    return (2, str(norm))


def execute(query: Query, records: list[dict[str, Any]], resolve: Resolver) -> list[dict[str, Any]]:
    """The matching records, ordered, offset and limited (not yet shaped)."""
    rows = [r for r in records if matches(query.where, r, resolve)]
    for path, desc, nulls_first in reversed(query.order):
        present = [r for r in rows if _follow(r, path, resolve) is not None]
        absent = [r for r in rows if _follow(r, path, resolve) is None]
        present.sort(key=lambda r, p=path: _sort_key(_follow(r, p, resolve)), reverse=desc)
        first = nulls_first if nulls_first is not None else not desc
        rows = absent + present if first else present + absent
    rows = rows[query.offset :]
    return rows[: query.limit] if query.limit is not None else rows


def shape(
    query: Query, record: dict[str, Any], resolve: Resolver, url_for: Callable[[str, str], str]
) -> dict[str, Any]:
    """One query result row: attributes plus the selected fields, relationships nested."""
    out: dict[str, Any] = {"attributes": {"type": query.obj.name, "url": url_for(query.obj.name, record["Id"])}}
    for path in query.fields:
        _place(out, record, path, 0, resolve, url_for)
    return out


def _place(
    out: dict[str, Any],
    record: dict[str, Any],
    path: Path,
    i: int,
    resolve: Resolver,
    url_for: Callable[[str, str], str],
) -> None:
    part = path.parts[i]
    if i == len(path.parts) - 1:
        out[part] = record.get(part)
        return
    rel = path.objects[i].relationship(part)
    target = path.objects[i + 1]
    ref_id = record.get(rel.name) if rel else None
    parent = resolve(target.name, ref_id) if ref_id else None
    if parent is None:
        out[part] = None
        return
    nested = out.get(part)
    if not isinstance(nested, dict):
        nested = {"attributes": {"type": target.name, "url": url_for(target.name, parent["Id"])}}
        out[part] = nested
    _place(nested, parent, path, i + 1, resolve, url_for)
