"""Durable, idempotent insertion of received events.

One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` per batch: the unique constraint on
(source, external_id) decides what is new, so concurrent deliveries of one id cannot both win.
Column values go through each model field's own `get_db_prep_save`, so the same SQL serves
PostgreSQL and SQLite.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from events.models import Event


@dataclass(frozen=True)
class NewEvent:
    source: str
    external_id: str
    type: str
    occurred_at: datetime | None
    workspace_key: str
    payload: Any
    status: str = Event.Status.NEW
    notes: str = ""
    received_at: datetime = field(default_factory=timezone.now)
    suppressed: bool = False
    payload_scrubbed_at: datetime | None = None


_COLUMNS = (
    "source",
    "external_id",
    "type",
    "occurred_at",
    "received_at",
    "workspace_key",
    "payload",
    "status",
    "retry_count",
    "notes",
    "lease_owner",
    "suppressed",
    "payload_scrubbed_at",
)


#: Characters PostgreSQL holds in neither text nor jsonb: NUL, and surrogates (json.loads leaves an unpaired
#: `\ud800` escape as one; a pair becomes the real character).
_UNHOLDABLE = re.compile("[\x00\ud800-\udfff]")


def holdable(value: Any) -> Any:
    """`value` with each character PostgreSQL cannot hold replaced by U+FFFD, in every string of it (keys
    too), on every database alike: an authentic event is stored, never refused with a 500."""
    if isinstance(value, str):
        return _UNHOLDABLE.sub("\ufffd", value) if _UNHOLDABLE.search(value) else value
    if isinstance(value, dict):
        return {holdable(key): holdable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [holdable(item) for item in value]
    return value


def _row(event: NewEvent) -> list[Any]:
    """The event's column values: through each model field, or on PostgreSQL as its arrays take them."""
    values = {**event.__dict__, "retry_count": 0, "lease_owner": ""}
    if connection.vendor == "postgresql":  # as _recordset_sql's JSON document takes them
        return [values[name] for name in _COLUMNS]
    return [Event._meta.get_field(name).get_db_prep_save(holdable(values[name]), connection) for name in _COLUMNS]


def insert_events(events: Sequence[NewEvent]) -> dict[tuple[str, str], int]:
    """Insert the events not seen before; return {(source, external_id): pk} of those inserted.

    Must run inside a transaction the caller commits. Repeats of a key within `events` are dropped
    here (the first wins), so the caller can answer them as duplicates. Rows go in key order.
    """
    unique: dict[tuple[str, str], NewEvent] = {}
    for event in events:
        unique.setdefault((event.source, event.external_id), event)
    if not unique:
        return {}
    keys = sorted(unique)  # in key order: see _values_sql
    sql, params = (_recordset_sql if connection.vendor == "postgresql" else _values_sql)([unique[key] for key in keys])
    # The keys as stored (see holdable) back to the caller's.
    callers = {(source, holdable(external_id)): (source, external_id) for source, external_id in unique}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {callers[source, external_id]: pk for pk, source, external_id in cursor.fetchall()}


def _conflict_and_returning() -> str:
    quote = connection.ops.quote_name
    return (
        f"ON CONFLICT ({quote('source')}, {quote('external_id')}) DO NOTHING "
        f"RETURNING {quote('id')}, {quote('source')}, {quote('external_id')}"
    )


def _values_sql(events: list[NewEvent]) -> tuple[str, list[Any]]:
    """One multi-row INSERT … VALUES, each value through its model field. Rows go in key order: two batches
    sharing ids wait for each other's rows in the same order, never in a cycle (a deadlock on PostgreSQL)."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in _COLUMNS)
    placeholders = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    params: list[Any] = []
    for event in events:
        params.extend(_row(event))
    sql = (
        f"INSERT INTO {quote(Event._meta.db_table)} ({columns}) VALUES {', '.join([placeholders] * len(events))} "  # noqa: S608
        + _conflict_and_returning()
    )
    return sql, params


#: PostgreSQL types of the columns, for _recordset_sql.
_PG_TYPES = {
    "source": "varchar",
    "external_id": "varchar",
    "type": "varchar",
    "occurred_at": "timestamptz",
    "received_at": "timestamptz",
    "workspace_key": "varchar",
    "payload": "jsonb",
    "status": "varchar",
    "retry_count": "integer",
    "notes": "text",
    "lease_owner": "varchar",
    "suppressed": "boolean",
    "payload_scrubbed_at": "timestamptz",
}


def _recordset_sql(events: list[NewEvent]) -> tuple[str, list[Any]]:
    """PostgreSQL: one INSERT … SELECT FROM jsonb_to_recordset(the rows as one JSON document). The statement is
    the same for every batch size, so it is parsed once, and the rows travel as one parameter that json.dumps
    writes in C. A VALUES list of 500 rows has 6,500 placeholders the driver re-scanned for every batch, and
    per-column arrays were escaped element by element (measured: the two largest costs of a batch)."""
    rows = [dict(zip(_COLUMNS, _row(event), strict=True)) for event in events]
    document = json.dumps(rows, ensure_ascii=False, default=_iso)
    if "\\u0000" in document or _SURROGATE.search(document):  # only then is each value made holdable
        document = json.dumps(holdable(rows), ensure_ascii=False, default=_iso)
    return _recordset_statement(), [document]


@functools.cache
def _recordset_statement() -> str:
    """_recordset_sql's statement text, built once (PostgreSQL only): quoting its names on every call was about a
    tenth of insert_events' CPU for the one-event commits of a webhook trickle."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(name) for name in _COLUMNS)
    record = ", ".join(f"{quote(name)} {_PG_TYPES[name]}" for name in _COLUMNS)
    return (
        f"INSERT INTO {quote(Event._meta.db_table)} ({names}) "  # noqa: S608 (names, not input)
        f"SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS r ({record}) " + _conflict_and_returning()
    )


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_SURROGATE = re.compile("[\ud800-\udfff]")
