"""Durable, idempotent insertion of received events.

One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` per batch: the unique constraint on
(source, external_id) decides what is new, so concurrent deliveries of one id cannot both win.
Column values go through each model field's own `get_db_prep_save`, so the same SQL serves
PostgreSQL and SQLite.
"""

from __future__ import annotations

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
        return _UNHOLDABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {holdable(key): holdable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [holdable(item) for item in value]
    return value


def _row(event: NewEvent) -> list[Any]:
    values = {**event.__dict__, "retry_count": 0, "lease_owner": ""}
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
    quote = connection.ops.quote_name
    table = quote(Event._meta.db_table)
    columns = ", ".join(quote(name) for name in _COLUMNS)
    placeholders = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    params: list[Any] = []
    # In key order: two batches sharing ids wait for each other's rows in the same order, never in a cycle
    # (PostgreSQL would break such a deadlock by failing one of them).
    for key in sorted(unique):
        params.extend(_row(unique[key]))
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholders] * len(unique))} "  # noqa: S608
        f"ON CONFLICT ({quote('source')}, {quote('external_id')}) DO NOTHING "
        f"RETURNING {quote('id')}, {quote('source')}, {quote('external_id')}"
    )
    # The keys as stored (see holdable) back to the caller's.
    callers = {(source, holdable(external_id)): (source, external_id) for source, external_id in unique}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {callers[source, external_id]: pk for pk, source, external_id in cursor.fetchall()}
