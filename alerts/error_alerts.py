"""Alerts about failures: the error kinds the ledger marked as due (new, reappeared, too frequent).

The ledger (failures/services.py) sits below alerts and only marks; this task, scheduled every minute
like the SLA checks, raises the alerts and clears the marks. A mark is cleared by a conditional UPDATE
in the alert's own transaction, so two runs never raise one alert twice (and the dedupe keys are the
same as ever: an alert that exists is not raised again).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from alerts.services import alert_raise
from failures.models import ErrorKind
from failures.services import admin_change_url


def error_alerts_raise() -> int:
    """Raise every due error alert; return how many were raised."""
    due = ErrorKind.objects.filter(Q(pending_since__isnull=False) | Q(pending_rate_window__isnull=False))
    raised = 0
    for error in due.select_related("last_object_type").order_by("pk"):
        with transaction.atomic():
            if error.pending_since and _cleared(error, pending_since=error.pending_since):
                _alert_new(error, reappeared_since=error.pending_since if error.pending_reappeared else None)
                raised += 1
            if error.pending_rate_window and _cleared(error, pending_rate_window=error.pending_rate_window):
                _alert_rate(error, error.pending_rate_window)
                raised += 1
    return raised


def _cleared(error: ErrorKind, **mark: datetime) -> bool:
    """Take the mark: exactly one of two concurrent runs gets it."""
    field = next(iter(mark))
    rows = ErrorKind.objects.filter(pk=error.pk, **mark)
    changes: dict[str, Any] = {field: None}
    if field == "pending_since":
        changes["pending_reappeared"] = False
    return rows.update(**changes) == 1


def _alert(rule: str, dedupe_key: str, title: str, reason: str, error: ErrorKind, **extra: Any) -> None:
    link = admin_change_url(error.last_object_type, error.last_object_id)
    alert_raise(
        rule=rule,
        dedupe_key=dedupe_key,
        title=title,
        reason=f"{reason}\nLatest: {error.last_example}" + (f"\nObject: {link}" if link else ""),
        workspace_key=error.last_workspace_key,
        context={
            "error_kind_id": error.pk,
            "source": error.source,
            "kind": error.kind,
            "message": error.message,
            "count": error.count,
            "object": link,
            **extra,
        },
    )


def _alert_new(error: ErrorKind, *, reappeared_since: datetime | None) -> None:
    what = "reappeared" if reappeared_since else "new"
    since = f":{reappeared_since.timestamp():.0f}" if reappeared_since else ""
    _alert(
        "error_new_kind",
        f"error_new_kind:{error.fingerprint}{since}",
        f"{what.capitalize()} {error.get_source_display().lower()} error: {error.kind}",
        f"A {what} kind of {error.get_source_display().lower()} failure: {error.kind}: {error.message}",
        error,
    )


def _alert_rate(error: ErrorKind, window: datetime) -> None:
    minutes = settings.ERROR_ALERT_WINDOW_MINUTES
    _alert(
        "error_rate",
        f"error_rate:{error.fingerprint}:{window:%Y%m%dT%H%M}",
        f"{error.get_source_display()} failing often: {error.kind}",
        f"{error.window_count} failures of this kind since {window:%H:%M} UTC "
        f"(threshold: {settings.ERROR_ALERT_RATE} in {minutes} minutes): {error.kind}: {error.message}",
        error,
        window_start=window.isoformat(),
        window_count=error.window_count,
        threshold=settings.ERROR_ALERT_RATE,
        window_minutes=minutes,
    )
