"""Configuration tables read once for a batch of alert evaluations instead of once per alert.

Territory rules, reps and admin recipients change by an admin's hand, not within the second a
processing task takes; inside `tables_cached()` each is read at its first use and kept to the end.
Re-entrant: inside an enclosing block the enclosing block's tables serve (one alert raised inside a
batch reads nothing again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_tables: ContextVar[dict[str, Any] | None] = ContextVar("alert_tables", default=None)


@contextmanager
def tables_cached() -> Iterator[None]:
    if _tables.get() is not None:
        yield
        return
    token = _tables.set({})
    try:
        yield
    finally:
        _tables.reset(token)


def table(name: str, read: Callable[[], T]) -> T:
    """`read()`, or inside tables_cached() the value it gave the first time."""
    cache = _tables.get()
    if cache is None:
        return read()
    if name not in cache:
        cache[name] = read()
    return cache[name]
