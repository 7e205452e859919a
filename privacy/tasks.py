"""django-q2 entry points (STYLE habit 5): load, call a service."""

from __future__ import annotations

from privacy.services import retention_run


def payload_retention() -> dict[str, int]:
    """The daily schedule. Picks up all that is due, so a missed day is not replayed one by one."""
    report = retention_run()
    return {"due": report.due, "scrubbed": report.scrubbed}
