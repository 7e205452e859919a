"""django-q2 task entry points: take ids, call the service (STYLE habit 5)."""

from __future__ import annotations

from triggers.services import DEFAULT_LIMIT, usage_rollup_batch


def rollup_usage(event_ids: list[int] | None = None) -> int:
    """Roll up these new usage events, or, given None (the sweeper), drain every new one.

    Returns how many events were counted. Safe to run twice or concurrently: the service claims each
    event once, in the same transaction that counts it.
    """
    if event_ids is not None:
        return sum(
            usage_rollup_batch(event_ids=event_ids[start : start + DEFAULT_LIMIT]).rolled_up
            for start in range(0, len(event_ids), DEFAULT_LIMIT)
        )
    total = 0
    while True:
        result = usage_rollup_batch(limit=DEFAULT_LIMIT)
        total += result.rolled_up
        if result.claimed < DEFAULT_LIMIT:
            return total
