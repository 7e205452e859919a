"""django-q2 task entry points: take arguments, call the service (STYLE habit 5)."""

from __future__ import annotations

from dataclasses import asdict

from messaging.delivery import dispatches_send_due


def send_dispatches(keys: list[str] | None = None) -> dict[str, int]:
    """Enqueued on the planner's commit with its rows' keys; scheduled every minute without keys, for
    retries that came due and rows a lost task left behind."""
    return asdict(dispatches_send_due(keys=keys))
