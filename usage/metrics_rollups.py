"""Rollup writers for the behaviour tables: support tickets and plan-limit hits per local day.

Plain functions the ingest path calls with a batch of events. Both are order-independent: a batch and
its events may arrive in any order, be split anyhow, and give the same rows (a duplicated plan-limit
event is counted twice, as duplicates are kept out upstream by the webhook id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import NotSupportedError, connection

from usage.models import PlanLimitDaily, SupportTicket

TICKET_OPENED = "support.ticket_opened"
TICKET_RESOLVED = "support.ticket_resolved"
LIMIT_REACHED = "plan.limit_reached"
_MAX = {"postgresql": "GREATEST", "sqlite": "max"}


@dataclass(frozen=True)
class RollupEvent:
    """An accepted event as the rollups need it: its workspace, time, `data` and type.

    The type tells a ticket's opening from its resolution; `plan_limits_rollup` takes only
    `plan.limit_reached` events and accepts them with the type left empty.
    """

    workspace_key: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    type: str = ""


@dataclass
class _Ticket:
    """One ticket's merged state; `merge` is commutative, so the order of events does not matter."""

    opened_at: datetime | None = None
    priority: str = SupportTicket.Priority.NORMAL
    resolved_at: datetime | None = None
    satisfaction: int | None = None

    def merge(self, other: _Ticket) -> None:
        if _opening_wins(other.opened_at, other.priority, self.opened_at, self.priority):
            self.opened_at, self.priority = other.opened_at, other.priority
        if _resolution_wins(other.resolved_at, other.satisfaction, self.resolved_at, self.satisfaction):
            self.resolved_at, self.satisfaction = other.resolved_at, other.satisfaction


def _opening_wins(new_at: datetime | None, new_priority: str, old_at: datetime | None, old_priority: str) -> bool:
    """The earliest opening is kept (ties: the greater priority name), as the upsert below decides."""
    if new_at is None:
        return False
    return old_at is None or new_at < old_at or (new_at == old_at and new_priority > old_priority)


def _resolution_wins(
    new_at: datetime | None, new_sat: int | None, old_at: datetime | None, old_sat: int | None
) -> bool:
    """The latest resolution is kept (ties: the greater satisfaction), as the upsert below decides."""
    if new_at is None:
        return False
    return old_at is None or new_at > old_at or (new_at == old_at and (new_sat or 0) > (old_sat or 0))


def tickets_apply(events: Iterable[RollupEvent]) -> int:
    """Upsert the tickets these opened/resolved events describe; return how many tickets were written.

    An opening keeps the earliest opened_at and its priority; a resolution keeps the latest resolved_at and
    its satisfaction; an opening that arrives after its resolution leaves the resolution as it is.
    """
    merged: dict[tuple[str, str], _Ticket] = {}
    for event in events:
        key = (event.workspace_key, _required(event, "ticket_id"))
        merged.setdefault(key, _Ticket()).merge(_ticket_of(event))
    rows = [_ticket_row(key, merged[key]) for key in sorted(merged)]  # sorted: one lock order, no deadlock
    execute_batches(_ticket_sql, rows, SupportTicket, _TICKET_COLUMNS)
    return len(rows)


def _ticket_of(event: RollupEvent) -> _Ticket:
    occurred_at = event.occurred_at.astimezone(UTC)
    if event.type == TICKET_OPENED:
        priority = event.data.get("priority") or SupportTicket.Priority.NORMAL
        if priority not in SupportTicket.Priority.values:
            raise ValueError(f"{event.type}: data.priority {priority!r} is not one of {SupportTicket.Priority.values}")
        return _Ticket(opened_at=occurred_at, priority=priority)
    if event.type == TICKET_RESOLVED:
        satisfaction = event.data.get("satisfaction")
        if satisfaction is not None and (type(satisfaction) is not int or not 1 <= satisfaction <= 5):
            raise ValueError(f"{event.type}: data.satisfaction must be a whole number from 1 to 5")
        return _Ticket(resolved_at=occurred_at, satisfaction=satisfaction)
    raise ValueError(f"tickets_apply takes {TICKET_OPENED} and {TICKET_RESOLVED} events, not {event.type}")


_TICKET_COLUMNS = ("workspace_key", "ticket_id", "priority", "opened_at", "resolved_at", "satisfaction")


def _ticket_row(key: tuple[str, str], ticket: _Ticket) -> list[Any]:
    ops = connection.ops
    return [
        *key,
        ticket.priority,
        ops.adapt_datetimefield_value(ticket.opened_at),
        ops.adapt_datetimefield_value(ticket.resolved_at),
        ticket.satisfaction,
    ]


def _ticket_sql(rows: int) -> str:
    table, qn = _table(SupportTicket), connection.ops.quote_name
    t, x = table, "excluded"
    opened, resolved = qn("opened_at"), qn("resolved_at")
    priority, satisfaction = qn("priority"), qn("satisfaction")
    opening_wins = (
        f"({x}.{opened} IS NOT NULL AND ({t}.{opened} IS NULL OR {x}.{opened} < {t}.{opened} "
        f"OR ({x}.{opened} = {t}.{opened} AND {x}.{priority} > {t}.{priority})))"
    )
    resolution_wins = (
        f"({x}.{resolved} IS NOT NULL AND ({t}.{resolved} IS NULL OR {x}.{resolved} > {t}.{resolved} "
        f"OR ({x}.{resolved} = {t}.{resolved} AND COALESCE({x}.{satisfaction}, 0) > COALESCE({t}.{satisfaction}, 0))))"
    )
    updates = [
        f"{column} = CASE WHEN {wins} THEN {x}.{column} ELSE {t}.{column} END"
        for wins, columns in ((opening_wins, (opened, priority)), (resolution_wins, (resolved, satisfaction)))
        for column in columns
    ]
    return insert_sql(SupportTicket, _TICKET_COLUMNS, rows) + (
        f" ON CONFLICT ({qn('workspace_key')}, {qn('ticket_id')}) DO UPDATE SET {', '.join(updates)}"
    )


def plan_limits_rollup(events: Iterable[RollupEvent], *, zones: Mapping[str, str] | None = None) -> int:
    """Add `plan.limit_reached` events to their workspace/limit/local-day rows; return the rows touched.

    The day is the event's day in the workspace's zone (`zones`: workspace key → IANA name, else UTC).
    """
    zones = zones or {}
    totals: dict[tuple[str, str, date], list[Any]] = {}
    for event in events:
        if event.type not in (LIMIT_REACHED, ""):
            raise ValueError(f"plan_limits_rollup takes {LIMIT_REACHED} events, not {event.type}")
        occurred_at = event.occurred_at.astimezone(UTC)
        day = occurred_at.astimezone(zone_named(zones.get(event.workspace_key))).date()
        key = (event.workspace_key, _required(event, "limit"), day)
        hits = totals.setdefault(key, [0, occurred_at])
        hits[0] += 1
        hits[1] = max(hits[1], occurred_at)
    ops = connection.ops
    rows = [
        [workspace, limit, ops.adapt_datefield_value(day), hits, ops.adapt_datetimefield_value(last)]
        for (workspace, limit, day), (hits, last) in sorted(totals.items())
    ]
    execute_batches(_limits_sql, rows, PlanLimitDaily, _LIMIT_COLUMNS)
    return len(rows)


_LIMIT_COLUMNS = ("workspace_key", "limit", "day", "hits", "last_hit_at")


def _limits_sql(rows: int) -> str:
    if connection.vendor not in _MAX:
        raise NotSupportedError(f"plan-limit rollup is not written for {connection.vendor}")
    table, qn = _table(PlanLimitDaily), connection.ops.quote_name
    last = qn("last_hit_at")
    return insert_sql(PlanLimitDaily, _LIMIT_COLUMNS, rows) + (
        f" ON CONFLICT ({qn('workspace_key')}, {qn('limit')}, {qn('day')}) DO UPDATE SET "
        f"{qn('hits')} = {table}.{qn('hits')} + excluded.{qn('hits')}, "
        f"{last} = {_MAX[connection.vendor]}({table}.{last}, excluded.{last})"
    )


def _required(event: RollupEvent, name: str) -> str:
    value = event.data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{event.type}: data.{name} is required (a non-empty string)")
    return value


@lru_cache(maxsize=1024)
def zone_named(name: str | None) -> ZoneInfo:
    """The zone by IANA name; an empty or unknown name counts in UTC rather than stopping a bulk pass."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def insert_sql(model: Any, columns: tuple[str, ...], rows: int) -> str:
    qn = connection.ops.quote_name
    values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * rows)
    return f"INSERT INTO {_table(model)} ({', '.join(qn(c) for c in columns)}) VALUES {values}"  # noqa: S608


def execute_batches(make_sql: Any, rows: list[list[Any]], model: Any, columns: tuple[str, ...]) -> None:
    """One multi-row statement per batch SQLite's parameter limit allows (one on PostgreSQL)."""
    fields = [model._meta.get_field(name) for name in columns]
    size = max(connection.ops.bulk_batch_size(fields, rows), 1)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            cursor.execute(make_sql(len(batch)), [value for row in batch for value in row])
