"""Reading a webhook body as JSON safely: nesting capped before parsing, integers within 64 bits, no
NaN or Infinity; `PayloadInvalid` names what was wrong, keyed the way the 422 body names it."""

from __future__ import annotations

import json
import math
import re
from typing import Any


class PayloadInvalid(Exception):
    def __init__(self, fields: dict[str, list[str]], body: Any = None) -> None:
        super().__init__(fields)
        self.fields = fields
        self.body = body


#: Deepest nesting a body may have (CONTRACT §2): deeper ones are refused before parsing, so neither the
#: parser nor anything walking the body later can run out of stack (RecursionError).
MAX_JSON_DEPTH = 64
#: Largest integer a body may carry: what a signed 64-bit integer holds (Stripe's amounts, a database bigint).
#: Beyond it are numbers no field takes; at 4,300 digits Python refuses to convert them at all.
MAX_JSON_INT = 2**63 - 1
TOO_DEEP = f"Nested deeper than {MAX_JSON_DEPTH} levels."
INT_OUT_OF_RANGE = f"Integers must lie between -{MAX_JSON_INT} and {MAX_JSON_INT}."
NOT_FINITE = "NaN, Infinity and numbers beyond a double's range are not JSON numbers."

_STRUCTURE = re.compile(rb'[\[\]{}"]')
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class _OutOfRange(str):
    """An integer too long to convert, as parsed: never leaves load_json (number_errors names it)."""


def _bounded_int(text: str) -> int | _OutOfRange:
    if len(text) > 20:  # 20 characters hold every 64-bit integer and its sign: refused unconverted
        return _OutOfRange(text)
    value = int(text)
    return value if abs(value) <= MAX_JSON_INT else _OutOfRange(text)


class _NumberHooks:
    """json.loads' number hooks for one body, noting whether any number is out of range: only then is the
    parsed body walked for their paths (number_errors), so a body without one costs no walk."""

    def __init__(self) -> None:
        self.seen_bad = False

    def integer(self, text: str) -> int | _OutOfRange:
        value = _bounded_int(text)
        self.seen_bad = self.seen_bad or isinstance(value, _OutOfRange)
        return value

    def real(self, text: str) -> float:
        value = float(text)  # 1e999 is inf
        self.seen_bad = self.seen_bad or not math.isfinite(value)
        return value

    def constant(self, name: str) -> float:  # NaN, Infinity, -Infinity
        self.seen_bad = True
        return float(name)


def json_nesting_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit`, found without parsing it.

    Strings are skipped whole, so brackets inside them do not count. A body with no more brackets than
    `limit` needs no scan (nearly every body). Malformed text may be misjudged; the parser refuses it anyway.
    """
    return json_depth(raw, limit) > limit


def json_depth(raw: bytes, cap: int) -> int:
    """How deep the JSON text nests arrays and objects, counted up to cap + 1 (the scan stops there). Text with
    no more brackets than `cap` is not scanned: its bracket count is returned, a bound on its depth."""
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets <= cap:
        return brackets
    depth, deepest, position = 0, 0, 0
    while (found := _STRUCTURE.search(raw, position)) is not None:
        char = raw[found.start()]
        if char == ord('"'):
            rest = _STRING_REST.match(raw, found.end())
            if rest is None:
                return deepest  # an unterminated string: malformed
            position = rest.end()
            continue
        depth += 1 if char in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > cap:
                return deepest
        position = found.end()
    return deepest


def number_errors(value: Any) -> dict[str, list[str]]:
    """The numbers in a parsed body that no field takes, by path (`data.count`, `data.items.0`): integers
    beyond 64 bits, NaN, ±Infinity (also what 1e999 parses to). Neither the fold nor the databases' JSON
    can hold them (SQLite's JSON_VALID refuses NaN: the row was refused with an IntegrityError)."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{path}.{key}" if path else str(key), child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}.{index}" if path else str(index), child) for index, child in enumerate(item))
        elif isinstance(item, _OutOfRange) or (
            isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INT
        ):
            errors[path or "body"] = [INT_OUT_OF_RANGE]
        elif isinstance(item, float) and not math.isfinite(item):
            errors[path or "body"] = [NOT_FINITE]
    return dict(sorted(errors.items()))


def load_json(raw: bytes) -> Any:
    """Parse a webhook body, refusing what the engine cannot hold: malformed JSON, nesting deeper than
    MAX_JSON_DEPTH, numbers beyond number_errors' limits. PayloadInvalid keeps the body as text then, which
    is always storable (the parsed body may not be)."""
    body, bad_numbers = _load_json(raw, MAX_JSON_DEPTH)
    if bad_numbers:
        raise PayloadInvalid(number_errors(body), body=raw.decode("utf-8", "replace"))
    return body


def _load_json(raw: bytes, depth: int | None) -> tuple[Any, bool]:
    """(parsed body, whether some number in it is out of range): PayloadInvalid for malformed JSON or nesting
    deeper than `depth` (None: the caller has checked). A caller that finds bad numbers asks number_errors
    where (load_json, batches)."""
    if depth is not None and json_nesting_exceeds(raw, depth):
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=raw.decode("utf-8", "replace"))
    hooks = _NumberHooks()
    try:
        body = json.loads(raw, parse_int=hooks.integer, parse_float=hooks.real, parse_constant=hooks.constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadInvalid({"body": [f"Malformed JSON: {exc}"]}, body=raw.decode("utf-8", "replace")) from exc
    except RecursionError as exc:  # only if the scan misjudged an encoding other than UTF-8
        raise PayloadInvalid({"body": [TOO_DEEP]}, body=raw.decode("utf-8", "replace")) from exc
    return body, hooks.seen_bad


def nesting_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parsed value nests arrays and objects deeper than `limit` (as json_nesting_exceeds counts)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False
