"""The metric aggregates as SQL, shared by the one-workspace and the bulk evaluation.

Each query joins one table to a small `bounds` CTE — one row per workspace with its own window edges
(its local "today" and the days or instants counted from it) — and groups by workspace. The same
statement serves one workspace on its event and a chunk of a thousand in the bulk pass, so the two
cannot disagree. Windows are whole days ending today: `[today-(n-1), today]` in the table's days.
Written for SQLite and PostgreSQL: no COUNT(DISTINCT a, b) (a pair is counted as one unambiguous text),
no FILTER, no LIKE (case-insensitive on SQLite), no NULLs in the bounds (PostgreSQL types them).
On PostgreSQL the bounds and the key list travel as a few arrays, not thousands of placeholders, and the
statements are not prepared (their best plan depends on the chunk's keys and windows).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.db import NotSupportedError, connection

from usage.models import PlanLimitDaily, SupportTicket, UsageDaily, UsageDailyUser

INTEGRATION_PREFIX = "integration."
#: Workspaces per sessions statement. Their (workspace, day, user) rows come in that order from the
#: (workspace_key, day, user_email) index (migration 0005), so the DISTINCT streams without a sort; before
#: it they were sorted, and 400 kept the sort within PostgreSQL's default work_mem.
SESSION_KEYS = 2000


@dataclass(frozen=True)
class Bounds:
    """One workspace's window edges for an evaluation (dates are table days, instants are UTC)."""

    key: str
    today: date
    d7: date  # first day of the 7-day window: today - 6
    d14: date  # today - 13: the current 14 days of a trend
    d28: date  # today - 27: the previous 14 days start here
    d30: date  # today - 29
    now: datetime
    since_14d: datetime  # first instant of local day today - 13
    since_74d: datetime  # first instant of local day today - 73: the 60-day baseline starts here
    until: datetime  # first instant of local day today + 1


def _usage_daily_sql() -> tuple[str, list[Any]]:
    """One GROUP BY workspace straight over the window's rows, every window a conditional aggregate.

    The rows come from the (workspace_key, day) index already grouped by workspace, so the aggregate
    streams. PostgreSQL sorts the input of each DISTINCT aggregate of each group apart; with nine of them
    that was half the statement. There is one now:

    - the active days are one bit a day (bit n: today - n; the window's 30 days fit 30 bits), OR-ed
      together (on SQLite, which has no BIT_OR, the sum of the distinct bits); Python counts the bits;
    - the features, products and integrations come as one list of distinct codes: `ok` (1 when the row's
      events were not all errors), the product's length, `:`, the product, the feature. Python counts the
      (product, feature) pairs, the products, each product's depth and the integrations from it; the
      length prefix keeps a code unambiguous whatever the names hold.

    Measured over 1,000 workspaces × 30 days on PostgreSQL: 46 ms a statement instead of 75.

    Returns the SELECT after the bounds CTE (with `{where}` for the row filter) and its parameters, which
    follow the filter's.
    """
    postgres = connection.vendor == "postgresql"
    code = "CASE WHEN u.events > u.errors THEN '1' ELSE '0' END || LENGTH(u.product) || ':' || u.product || u.feature"
    columns = [
        "BIT_OR(CAST(1 AS BIGINT) << (b.t - u.day))"
        if postgres
        else "SUM(DISTINCT 1 << CAST(julianday(b.t) - julianday(u.day) AS INTEGER))",
        "SUM(CASE WHEN u.day >= b.d7 THEN u.duration_seconds ELSE 0 END)",
        "SUM(CASE WHEN u.day >= b.d28 THEN u.duration_seconds ELSE 0 END)",
        "SUM(CASE WHEN u.day >= b.d14 THEN u.duration_seconds ELSE 0 END)",
        "SUM(CASE WHEN u.day >= b.d28 AND u.day < b.d14 THEN u.duration_seconds ELSE 0 END)",
        "SUM(CASE WHEN u.day >= b.d7 THEN u.errors ELSE 0 END)",
        "SUM(u.events)",
        "SUM(CASE WHEN u.product = %s THEN u.events ELSE 0 END)",
        "MAX(u.day)",
        # Unix seconds on PostgreSQL, what the profile keeps: loading a timestamp with its zone cost more.
        "FLOOR(EXTRACT(EPOCH FROM MAX(u.last_seen_at)))::bigint" if postgres else "MAX(u.last_seen_at)",
        f"ARRAY_AGG(DISTINCT {code})" if postgres else f"JSON_GROUP_ARRAY(DISTINCT {code})",
    ]
    select = (
        f"SELECT u.workspace_key, {', '.join(columns)} FROM {_table(UsageDaily)} u "  # noqa: S608 (names)
        "{join} WHERE {where} GROUP BY u.workspace_key"
    )
    return select, ["api"]


#: The usage statement's columns after the workspace key, in order.
_USAGE_DAILY_COLUMNS = (
    "days",
    "duration_7d",
    "duration_28d",
    "duration_this_14d",
    "duration_previous_14d",
    "errors_7d",
    "events_30d",
    "api_events_30d",
    "last_active_day",
    "last_active_at",
    "codes",
)
_WEEK = (1 << 7) - 1  # bits 0-6: today and the six days before


def _usage_daily_row(values: Sequence[Any], depths: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """One workspace's usage aggregates from its row: the day bits and the distinct codes counted (`depths`:
    each product with its depth metric's name)."""
    row = dict(zip(_USAGE_DAILY_COLUMNS, values, strict=True))
    days = int(row.pop("days") or 0)
    codes = row.pop("codes") or []
    if isinstance(codes, str):  # SQLite's JSON array
        codes = json.loads(codes)
    pairs = {code[1:] for code in codes}  # a (product, feature) pair's text: the code without its flag
    depth: dict[str, int] = {}
    for pair in pairs:
        colon = pair.index(":")
        product = pair[colon + 1 : colon + 1 + int(pair[:colon])]
        depth[product] = depth.get(product, 0) + 1
    integrations = set()
    for code in codes:
        if code[0] == "1" and INTEGRATION_PREFIX in code:
            colon = code.index(":", 1)
            feature = code[colon + 1 + int(code[1:colon]) :]
            if feature.startswith(INTEGRATION_PREFIX):
                integrations.add(feature)
    row["active_days_7d"] = (days & _WEEK).bit_count()
    row["active_days_30d"] = days.bit_count()
    row["features_30d"] = len(pairs)
    row["products_used_30d"] = sum(1 for product in depth if product)
    row["integration_depth_30d"] = len(integrations)
    for product, alias in depths:
        row[alias] = depth.get(product, 0)
    return row


USAGE_USER_ALIASES = ("sessions_7d", "sessions_28d", "sessions_this_14d", "sessions_previous_14d", "seats_30d")
TICKET_ALIASES = ("open_tickets", "tickets_14d", "tickets_baseline_60d")
LIMIT_ALIASES = ("plan_limit_hits_30d",)


def depth_alias(product: str) -> str:
    return f"depth_{product}_30d"


def usage_daily(bounds: Sequence[Bounds], products: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Sums and counts over `UsageDaily` (the workspaces' local days), per workspace.

    Only the rows of each workspace's own 30-day window are read (the chunk's earliest window start
    bounds the index range); the last active day and time come from those rows when there are any,
    else from `last_active` for the workspaces without.
    """
    select, column_params = _usage_daily_sql()
    depths = [(product, depth_alias(product)) for product in products]
    result: dict[str, dict[str, Any]] = {}
    fixed = len(column_params) + 1
    per_statement = max((_max_params() - fixed) // 7, 1)
    for part, uniform in _parts(bounds, ("t", "d7", "d14", "d28", "d30"), per_statement):
        cte, cte_params = _bounds_cte(part, ("t", "d7", "d14", "d28", "d30"), uniform=uniform)
        keys, key_params = _key_list(part)
        where = f"u.workspace_key {keys} AND u.day >= %s AND u.day <= b.t AND u.day >= b.d30"
        join = "CROSS JOIN b" if uniform else "JOIN b ON u.workspace_key = b.k"
        sql = f"{cte} {select.replace('{where}', where).replace('{join}', join)}"
        params = [*cte_params, *column_params, *key_params, _earliest(part)]
        with connection.cursor() as cursor, _custom_plan():
            cursor.execute(sql, params)
            for key, *values in cursor.fetchall():
                result[key] = _usage_daily_row(values, depths)
    return result


def last_active(bounds: Sequence[Bounds]) -> dict[str, dict[str, Any]]:
    """The last day with usage up to today, and its last event's time, over a workspace's whole history.

    Two index probes per workspace (the rows of the last day hold the latest time), for the workspaces
    with no usage in their windows.
    """
    result: dict[str, dict[str, Any]] = {}
    table, qn = _table(UsageDaily), connection.ops.quote_name
    key = qn("workspace_key")
    per_statement = max(_max_params() // 2, 1)
    for start in range(0, len(bounds), per_statement):
        cte, params = _bounds_cte(bounds[start : start + per_statement], ("t",))
        sql = (
            f"{cte}, d AS (SELECT b.k, (SELECT MAX(u.day) FROM {table} u "  # noqa: S608 (names, not input)
            f"WHERE u.{key} = b.k AND u.day <= b.t) AS last_day FROM b) "
            f"SELECT d.k, d.last_day, (SELECT MAX(u.last_seen_at) FROM {table} u "
            f"WHERE u.{key} = d.k AND u.day = d.last_day) FROM d WHERE d.last_day IS NOT NULL"
        )
        with connection.cursor() as cursor, _custom_plan():
            cursor.execute(sql, params)
            for workspace, day, at in cursor.fetchall():
                result[workspace] = {"last_active_day": day, "last_active_at": at}
    return result


def data_ahead(bounds: Sequence[Bounds]) -> dict[str, tuple[Any, Any, Any]]:
    """What these workspaces have stored that lies after their today, by key (only those with any): the first
    local day of usage, the first local day of plan-limit hits, and the first ticket opened or resolved after
    now (an instant), each None when there is none.

    Time alone brings such rows into the windows (an event's clock ahead of ours); a workspace whose windows
    are empty is due again when the first of them comes. Four index probes a workspace.
    """
    result: dict[str, tuple[Any, Any, Any]] = {}
    usage, limits, tickets = _table(UsageDaily), _table(PlanLimitDaily), _table(SupportTicket)
    qn = connection.ops.quote_name
    key = qn("workspace_key")
    per_statement = max(_max_params() // 3, 1)
    for start in range(0, len(bounds), per_statement):
        cte, params = _bounds_cte(bounds[start : start + per_statement], ("t", "now_at"))
        sql = (
            f"{cte} SELECT b.k, (SELECT MIN(u.day) FROM {usage} u WHERE u.{key} = b.k AND u.day > b.t), "  # noqa: S608
            f"(SELECT MIN(p.day) FROM {limits} p WHERE p.{key} = b.k AND p.day > b.t), "
            f"(SELECT MIN(s.opened_at) FROM {tickets} s WHERE s.{key} = b.k AND s.opened_at > b.now_at), "
            f"(SELECT MIN(s.resolved_at) FROM {tickets} s WHERE s.{key} = b.k AND s.resolved_at > b.now_at) FROM b"
        )
        with connection.cursor() as cursor, _custom_plan():
            cursor.execute(sql, params)
            for workspace, day, limit_day, opened, resolved in cursor.fetchall():
                instants = [as_datetime(at) for at in (opened, resolved) if at is not None]
                if day is not None or limit_day is not None or instants:
                    result[workspace] = (as_date(day), as_date(limit_day), min(instants) if instants else None)
    return result


def _earliest(bounds: Sequence[Bounds]) -> Any:
    """The chunk's earliest window start, as a constant the database can use with its day index."""
    return connection.ops.adapt_datefield_value(min((bound.d30 for bound in bounds), default=None))


def usage_users(bounds: Sequence[Bounds]) -> dict[str, dict[str, Any]]:
    """Sessions (one user active on one day) and seats over `UsageDailyUser`.

    The inner DISTINCT makes each row one session, so the windows are plain sums, not DISTINCT counts.
    """
    table = _table(UsageDailyUser)
    sessions = f"(SELECT DISTINCT workspace_key, day, user_email FROM {table} WHERE day >= %s)"  # noqa: S608
    columns = [
        "SUM(CASE WHEN x.day >= b.d7 THEN 1 ELSE 0 END)",
        "SUM(CASE WHEN x.day >= b.d28 THEN 1 ELSE 0 END)",
        "SUM(CASE WHEN x.day >= b.d14 THEN 1 ELSE 0 END)",
        "SUM(CASE WHEN x.day >= b.d28 AND x.day < b.d14 THEN 1 ELSE 0 END)",
        "COUNT(DISTINCT x.user_email)",
    ]
    return _grouped(
        bounds,
        ("t", "d7", "d14", "d28", "d30"),
        source=sessions,
        alias="x",
        columns=columns,
        params=[_earliest(bounds)],
        where="x.day <= b.t AND x.day >= b.d30",
        names=USAGE_USER_ALIASES,
        max_keys=SESSION_KEYS,
    )


def tickets(bounds: Sequence[Bounds]) -> dict[str, dict[str, Any]]:
    """Open tickets now, and tickets opened in whole local days (their timestamps make that exact)."""
    columns = [
        "SUM(CASE WHEN s.opened_at <= b.now_at AND (s.resolved_at IS NULL OR s.resolved_at > b.now_at) "
        "THEN 1 ELSE 0 END)",
        "SUM(CASE WHEN s.opened_at >= b.since_14d AND s.opened_at < b.end_at THEN 1 ELSE 0 END)",
        "SUM(CASE WHEN s.opened_at >= b.since_74d AND s.opened_at < b.since_14d THEN 1 ELSE 0 END)",
    ]
    return _grouped(
        bounds,
        ("now_at", "since_14d", "since_74d", "end_at"),
        source=_table(SupportTicket),
        alias="s",
        columns=columns,
        params=[],
        where="s.opened_at IS NOT NULL",
        names=TICKET_ALIASES,
    )


def plan_limits(bounds: Sequence[Bounds]) -> dict[str, dict[str, Any]]:
    """Plan-limit hits over the 30 local days ending today."""
    return _grouped(
        bounds,
        ("t", "d30"),
        source=_table(PlanLimitDaily),
        alias="p",
        columns=["SUM(p.hits)"],
        params=[],
        where="p.day >= b.d30 AND p.day <= b.t",
        names=LIMIT_ALIASES,
    )


_BOUND_FIELDS = {
    "t": "today",
    "d7": "d7",
    "d14": "d14",
    "d28": "d28",
    "d30": "d30",
    "now_at": "now",
    "since_14d": "since_14d",
    "since_74d": "since_74d",
    "end_at": "until",
}
_DATETIME_BOUNDS = {"now_at", "since_14d", "since_74d", "end_at"}


def _grouped(
    bounds: Sequence[Bounds],
    bound_columns: Sequence[str],
    *,
    source: str,
    alias: str,
    columns: Sequence[str],
    params: Sequence[Any],
    where: str,
    names: Sequence[str],
    max_keys: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run one GROUP BY workspace over `source` for these workspaces, in statements SQLite accepts.

    `params` are those of `columns` and then of `source`, in the order they appear; `max_keys` caps the
    workspaces of one statement.
    """
    result: dict[str, dict[str, Any]] = {}
    per_statement = max(min((_max_params() - len(params)) // (len(bound_columns) + 2), max_keys or 1 << 30), 1)
    qn = connection.ops.quote_name
    key = f"{alias}.{qn('workspace_key')}"
    for part, uniform in _parts(bounds, bound_columns, per_statement):
        cte, cte_params = _bounds_cte(part, bound_columns, uniform=uniform)
        # The key list, not only the join, selects the rows: PostgreSQL then reads the workspaces' rows by
        # index instead of hashing the whole table against the bounds for every chunk.
        keys, key_params = _key_list(part)
        join = "CROSS JOIN b" if uniform else f"JOIN b ON {key} = b.k"
        sql = (
            f"{cte} SELECT {key}, {', '.join(columns)} "  # noqa: S608 (names, not input)
            f"FROM {source} {alias} {join} "
            f"WHERE {key} {keys} AND {where} GROUP BY {key}"
        )
        with connection.cursor() as cursor, _custom_plan():
            cursor.execute(sql, [*cte_params, *params, *key_params])
            for workspace, *values in cursor.fetchall():
                result[workspace] = dict(zip(names, values, strict=True))
    return result


@contextmanager
def _custom_plan() -> Iterator[None]:
    """Run these statements unprepared on PostgreSQL (psycopg's prepare_threshold off meanwhile).

    A prepared statement gets a generic plan after a few runs; for these, whose best plan depends on the
    chunk's keys and windows, a generic plan measured 20x slower (0.6 s instead of 30 ms a chunk).
    """
    raw = connection.connection if connection.vendor == "postgresql" else None
    if raw is None:
        yield
        return
    threshold = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = threshold


def _key_list(bounds: Sequence[Bounds]) -> tuple[str, list[Any]]:
    """`IN (%s, …)`, or on PostgreSQL `= ANY(KEYS_ARRAY)` with one array parameter (a statement of a few
    parameters is parsed once, not thousands of placeholders per chunk)."""
    if connection.vendor == "postgresql":
        return f"= ANY({keys_array(len(bounds))})", [array_literal(bound.key for bound in bounds)]
    return f"IN ({', '.join(['%s'] * len(bounds))})", [bound.key for bound in bounds]


#: The key array as a sub-select the planner cannot look into. Given the array itself, PostgreSQL estimated
#: the selectivity of every key against the column's statistics (2-5 ms of planning for 1,000 keys, more
#: than running the statement on the small tables); behind the sub-select it plans the same index scans
#: whatever the number of keys, and the executor reads the array once. Measured over 1,000-workspace chunks:
#: tickets 4.8 → 1.4 ms, plan-limit hits 6.9 → 1.6 ms, usage 20.9 → 14.2 ms, sessions 22.7 → 19.2 ms.
KEYS_ARRAY = "(SELECT %s::text[])::text[]"
#: From this many keys the statement takes KEYS_ARRAY (a sweep's chunk of 1,000); fewer (a usage batch's
#: workspaces, a few dozen to a few hundred) plan in well under a millisecond, and there seeing the keys lets
#: PostgreSQL fit its estimates to them, as it did before KEYS_ARRAY.
KEYS_ARRAY_FROM = 300


def keys_array(count: int) -> str:
    """The array expression of a `= ANY(…)` over `count` keys: KEYS_ARRAY for many, the literal for a few."""
    return KEYS_ARRAY if count >= KEYS_ARRAY_FROM else "%s::text[]"


def array_literal(values: Iterable[str]) -> str:
    """A PostgreSQL array literal ('{"a","b"}') of these strings, for a `%s::text[]` parameter.

    One plain string: psycopg dumping a Python list walks it element by element in Python, which was a
    tenth of a rollup batch's re-evaluation (a dozen lists of hundreds of keys and dates per batch).
    """
    values = list(values)
    joined = '","'.join(values)
    # Rare: a value holds a backslash or a quote (beyond the separators' two each): escape every value.
    if "\\" in joined or joined.count('"') > 2 * (len(values) - 1):
        joined = '","'.join(value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return '{"' + joined + '"}' if values else "{}"


#: At most this many statements per part of a chunk that share their window edges (one per local day: a
#: chunk's workspaces span at most three local dates at any instant); beyond it, one statement per part
#: with every workspace's own edges.
UNIFORM_GROUPS = 4


def _parts(
    bounds: Sequence[Bounds], columns: Sequence[str], per_statement: int
) -> Iterator[tuple[Sequence[Bounds], bool]]:
    """The statements' parts of a chunk, each with whether its workspaces share every edge in `columns`.

    Workspaces sharing their edges (the same local day: most chunks are one or two) are read with the edges
    as constants: PostgreSQL then reads their rows by the (workspace, day) index in key order and groups
    them as they come, instead of hashing them against a per-workspace bounds list and sorting the result
    (half the usage aggregate's time). A chunk spread over more edges than UNIFORM_GROUPS (tickets, whose
    edges are instants, differ per zone offset) keeps the per-workspace list.
    """
    groups: dict[Any, list[Bounds]] = {}
    # Date edges follow from the local day; instants from the day and the zone's offsets.
    instants = not _DATETIME_BOUNDS.isdisjoint(columns)
    for bound in bounds:
        edge = (bound.today, bound.now, bound.since_14d, bound.since_74d, bound.until) if instants else bound.today
        groups.setdefault(edge, []).append(bound)
    uniform = len(groups) <= UNIFORM_GROUPS
    for group in groups.values() if uniform else [list(bounds)]:
        for start in range(0, len(group), per_statement):
            yield group[start : start + per_statement], uniform


def _bounds_cte(bounds: Sequence[Bounds], columns: Sequence[str], *, uniform: bool = False) -> tuple[str, list[Any]]:
    """`WITH b (k, <columns>)`: each workspace's edges; `uniform`: one row of the edges the workspaces share
    (`b (<columns>)`, no key), for a statement that filters the keys itself."""
    if uniform:
        first, ops = bounds[0], connection.ops
        params = [
            ops.adapt_datetimefield_value(getattr(first, _BOUND_FIELDS[c]))
            if c in _DATETIME_BOUNDS
            else ops.adapt_datefield_value(getattr(first, _BOUND_FIELDS[c]))
            for c in columns
        ]
        values = ", ".join(_typed(c) for c in columns)
        return f"WITH b ({', '.join(columns)}) AS (VALUES ({values}))", params
    if connection.vendor == "postgresql":  # one array per column, unnested: a few parameters per chunk
        arrays = ", ".join(
            ["%s::text[]", *(f"%s::text[]::{'timestamptz' if c in _DATETIME_BOUNDS else 'date'}[]" for c in columns)]
        )
        params = [array_literal(bound.key for bound in bounds)]
        # ISO text, cast by the server
        params += [array_literal(getattr(bound, _BOUND_FIELDS[column]).isoformat() for bound in bounds)
                   for column in columns]  # fmt: skip
        return f"WITH b (k, {', '.join(columns)}) AS (SELECT * FROM unnest({arrays}))", params  # noqa: S608
    placeholders = ", ".join(["%s", *(_typed(column) for column in columns)])
    values = ", ".join([f"({placeholders})"] * len(bounds))
    params: list[Any] = []
    ops = connection.ops
    for bound in bounds:
        params.append(bound.key)
        for column in columns:
            value = getattr(bound, _BOUND_FIELDS[column])
            if column in _DATETIME_BOUNDS:
                params.append(ops.adapt_datetimefield_value(value))
            else:
                params.append(ops.adapt_datefield_value(value))
    return f"WITH b (k, {', '.join(columns)}) AS (VALUES {values})", params


def _typed(column: str) -> str:
    """A placeholder PostgreSQL can type inside VALUES; SQLite compares the stored text as it is."""
    if connection.vendor == "postgresql":
        return "CAST(%s AS timestamptz)" if column in _DATETIME_BOUNDS else "CAST(%s AS date)"
    if connection.vendor == "sqlite":
        return "%s"
    raise NotSupportedError(f"usage metrics are not written for {connection.vendor}")


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _max_params() -> int:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return 60_000  # PostgreSQL's protocol allows 65,535 parameters per statement


def as_date(value: Any) -> date | None:
    """MAX(day) is a date on PostgreSQL and ISO text on SQLite."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def as_datetime(value: Any) -> datetime | None:
    """MAX(timestamp) is an aware datetime on PostgreSQL and naive UTC text on SQLite."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
