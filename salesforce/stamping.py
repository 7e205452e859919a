"""Recording a Salesforce call's successes in a few statements, never waiting for a row lock.

Each statement updates many rows, each with its own values. Processing holds workspace, lead and
outbox rows in long transactions while the drainer records; holding one row while waiting for another
could close a cycle with it. So on PostgreSQL a statement updates only the rows it can lock at once
(FOR UPDATE SKIP LOCKED) and returns the keys of those it skipped, for the caller to record one by
one. SQLite has no row locks: a plain UPDATE … FROM.

On PostgreSQL the values go in as one typed array per column (unnest), so the statement's text does
not depend on the number of rows: one prepared statement serves every batch, with client- or
server-side binding alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model

from salesforce.models import OutboxItem
from workspaces.models import Workspace


def workspaces_stamp(stamps: dict[str, str], *, state: str, now: datetime) -> set[str]:
    """Workspaces by workspace_id get their Salesforce id, sync state and time; returns the ids skipped."""
    column = _columns(Workspace)
    sets = (
        f"{column('salesforce_id')} = v.sfid, {column('salesforce_state')} = {_param('text')}, "
        f"{column('salesforce_synced_at')} = {_param('timestamptz')}"
    )
    rows = list(stamps.items())
    params = [state, _db_value(Workspace, "salesforce_synced_at", now)]
    return _update_unlocked(Workspace, "workspace_id", (("k", "text"), ("sfid", "text")), rows, sets, params)


def salesforce_ids_stamp(model: type[Model], stamps: dict[int, str]) -> set[int]:
    """Records by primary key get their Salesforce id where it differs; returns the keys skipped."""
    column = _columns(model)
    sets = f"{column('salesforce_id')} = v.sfid"
    differs = f"t.{column('salesforce_id')} <> v.sfid"  # a row already stamped is not written, nor locked
    columns = (("k", "bigint"), ("sfid", "text"))
    rows = list(stamps.items())
    return _update_unlocked(model, model._meta.pk.name, columns, rows, sets, [], condition=differs)


def outbox_rows_synced(rows: Sequence[tuple[int, int, str]], *, now: datetime) -> set[int]:
    """(pk, version sent, Salesforce id) rows: synced when their version is still the one sent, else only
    the Salesforce id and the sent version (the newer version goes next); returns the pks skipped."""
    column = _columns(OutboxItem)
    same = f"t.{column('version')} = v.version"

    def if_same(name: str, value: str) -> str:
        return f"{column(name)} = CASE WHEN {same} THEN {value} ELSE t.{column(name)} END"

    sets = ", ".join(
        [
            f"{column('salesforce_id')} = v.sfid",
            f"{column('sent_version')} = v.version",
            f"{column('lease_owner')} = ''",
            f"{column('lease_expires_at')} = NULL",
            if_same("state", _param("text")),
            if_same("synced_at", _param("timestamptz")),
            if_same("attempts", "0"),
            if_same("error_code", "''"),
            if_same("error_message", "''"),
            if_same("next_attempt_at", "NULL"),
        ]
    )
    params = [OutboxItem.State.SYNCED, _db_value(OutboxItem, "synced_at", now)]
    columns = (("k", "bigint"), ("version", "bigint"), ("sfid", "text"))
    return _update_unlocked(OutboxItem, OutboxItem._meta.pk.name, columns, rows, sets, params)


def _update_unlocked(
    model: type[Model],
    key: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[Any, ...]],
    sets: str,
    params: list[Any],
    *,
    condition: str = "TRUE",
) -> set[Any]:
    """UPDATE the rows of `model` whose `key` is a row's first value (v.k), applying `sets` (SQL over t,
    the table row, and v, the values: `columns` are their names and PostgreSQL types) where
    `condition` holds; returns the keys of the rows skipped because another transaction holds them."""
    if not rows:
        return set()
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    match = f"t.{quote(model._meta.get_field(key).column)} = v.k"
    names = ", ".join(name for name, _ in columns)
    if connection.vendor != "postgresql":
        values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
        sql = (
            f"WITH v({names}) AS (VALUES {values}) "  # noqa: S608 (names from _meta, values as parameters)
            f"UPDATE {table} AS t SET {sets} FROM v WHERE {match} AND {condition}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for row in rows for value in row] + params)
        return set()
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
    # Each scan of the table also names its keys as an array: the planner then probes the index with
    # them rather than reading the whole table to hash-join a few hundred values.
    mine = f"t.{quote(model._meta.get_field(key).column)} = ANY(%s::{columns[0][1]}[])"
    sql = (
        f"WITH v({names}) AS (SELECT * FROM unnest({arrays})), "  # noqa: S608 (names from _meta)
        f"locked AS (SELECT t.{pk} FROM {table} AS t JOIN v ON {match} WHERE {mine} AND {condition} "
        "FOR UPDATE OF t SKIP LOCKED), "
        f"done AS (UPDATE {table} AS t SET {sets} FROM v WHERE {match} AND {mine} "
        f"AND t.{pk} IN (SELECT {pk} FROM locked) RETURNING t.{pk}) "
        f"SELECT v.k FROM v JOIN {table} AS t ON {match} "
        f"WHERE {mine} AND {condition} AND t.{pk} NOT IN (SELECT {pk} FROM done)"
    )
    values = [list(column) for column in zip(*rows, strict=True)]
    keys = values[0]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, keys, *params, keys, keys])  # in the order of their placeholders
        return {row[0] for row in cursor.fetchall()}


def _columns(model: type[Model]) -> Callable[[str], str]:
    """The quoted column of each field of `model`, by field name."""

    def column(name: str) -> str:
        return connection.ops.quote_name(model._meta.get_field(name).column)

    return column


def _param(kind: str) -> str:
    """A placeholder, typed on PostgreSQL: with server-side binding it cannot always infer the type."""
    return f"%s::{kind}" if connection.vendor == "postgresql" else "%s"


def _db_value(model: type[Model], name: str, value: Any) -> Any:
    return model._meta.get_field(name).get_db_prep_save(value, connection)
