"""The per-workspace lock (WorkspaceLock) for writers that take many workspaces at once."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from workspaces.models import WorkspaceLock


def workspace_locks_take(workspace_keys: Sequence[str]) -> None:
    """Hold these workspaces' locks until the commit, taken in key order (as the processing run takes them).

    Every writer of a workspace's behaviour takes them (usage.services: the processing run, which holds
    them already, the usage rollup and the sweep): two re-evaluating one workspace at once both saw its
    old stage period open and both opened a new one; the second failed on the one-open-period constraint
    and its whole batch was rolled back (found by bench/usage_freshness.py). Locked, the second waits and
    then reads what the first wrote. One INSERT … ON CONFLICT DO UPDATE that leaves `processed_at` as it was
    (the lifecycle's); on PostgreSQL, row locks (`_lock_rows`).
    """
    keys = sorted(set(workspace_keys))
    if not keys:
        return
    if connection.vendor == "postgresql":
        _lock_rows(keys)
        return
    qn = connection.ops.quote_name
    table = qn(WorkspaceLock._meta.db_table)
    key, processed = qn("workspace_key"), qn("processed_at")
    size = max(connection.ops.bulk_batch_size([WorkspaceLock._meta.pk], keys), 1)
    with connection.cursor() as cursor:
        for start in range(0, len(keys), size):
            batch = keys[start : start + size]
            cursor.execute(
                f"INSERT INTO {table} ({key}, {processed}) VALUES {', '.join(['(%s, NULL)'] * len(batch))} "  # noqa: S608
                f"ON CONFLICT ({key}) DO UPDATE SET {processed} = {table}.{processed}",
                batch,
            )


def _lock_rows(keys: list[str]) -> None:
    """PostgreSQL: create the missing rows (ON CONFLICT DO NOTHING writes nothing for the others), then lock
    every row with SELECT … FOR UPDATE, one equality probe a key in key order (`unnest` joined LATERAL), which
    the unique index serves whatever the table's statistics say. The upsert wrote a new version of every row
    and its index entry each call, a hundred a rollup batch with profiles on; `key = ANY(array) FOR UPDATE`
    on a table grown faster than its statistics (a first sweep over 100,000 workspaces) was a sequential
    scan comparing each row with the whole array (bench/behaviour.py: 184.8 s instead of 21.7 s)."""
    table = connection.ops.quote_name(WorkspaceLock._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (workspace_key, processed_at) SELECT unnest(%s::text[]), NULL "
            "ON CONFLICT (workspace_key) DO NOTHING",
            [keys],
        )
        cursor.execute(
            f"SELECT l.workspace_key FROM unnest(%s::text[]) AS k (key) CROSS JOIN LATERAL "  # noqa: S608
            f"(SELECT workspace_key FROM {table} WHERE workspace_key = k.key FOR UPDATE) AS l",
            [keys],
        )
