"""Heartbeats and error tracking: the failure ledger every app writes.

`error_record` is called from every failure path (event processing, Salesforce sync, alert
delivery). It groups failures by a fingerprint of source, kind and normalised message, so a storm of
one failure is one row with a count; it marks an alert as due when a kind is new (or back after being
marked resolved) and when a kind crosses ERROR_ALERT_RATE occurrences within one
ERROR_ALERT_WINDOW_MINUTES window; the alerts app's task raises them (alerts/error_alerts.py), so this
low module calls nothing above it. It never raises: recording must not change the failure handling
that called it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, IntegrityError, models, transaction
from django.db.models import Case, F, Value, When
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from failures.models import ErrorKind, Heartbeat

logger = logging.getLogger(__name__)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PLACEHOLDERS = (
    (EMAIL, "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'<value>'"),
    # Salesforce ids (15/18 characters, letters and digits) and prefixed ids such as ws_8812, msg_2mK7.
    (re.compile(r"\b(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\b"), "<id>"),
    (re.compile(r"\b[A-Za-z]+_(?=\w*\d)\w+\b"), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)


def error_message_normalise(message: str) -> str:
    """The message with what varies between occurrences (ids, numbers, addresses, values) replaced."""
    text = message.strip()
    for pattern, placeholder in _PLACEHOLDERS:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())[:500]


def error_fingerprint(source: str, kind: str, normalised: str) -> str:
    return hashlib.sha256(f"{source}\x1f{kind}\x1f{normalised}".encode()).hexdigest()


def error_window_start(now: datetime) -> datetime:
    """Start of the fixed (clock-aligned) rate window containing `now`."""
    seconds = settings.ERROR_ALERT_WINDOW_MINUTES * 60
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def admin_change_url(content_type: ContentType | None, object_id: str) -> str:
    """The admin page of an object, or '' when its model has none."""
    if content_type is None or not object_id:
        return ""
    try:
        return reverse(f"admin:{content_type.app_label}_{content_type.model}_change", args=[object_id])
    except NoReverseMatch:
        return ""


def error_record(
    *,
    source: str,
    kind: str,
    message: str,
    obj: models.Model | None = None,
    workspace_key: str = "",
    now: datetime | None = None,
) -> ErrorKind | None:
    """Count one failure under its kind; mark an alert due when it is new or too frequent; never raises."""
    try:
        with transaction.atomic():
            return _record(source, kind[:100] or "Error", message, obj, workspace_key, now or timezone.now())
    except DatabaseError:
        logger.exception("recording a %s error (%s) failed", source, kind)
        return None


def _record(
    source: str, kind: str, message: str, obj: models.Model | None, workspace_key: str, now: datetime
) -> ErrorKind:
    normalised = error_message_normalise(message)
    fingerprint = error_fingerprint(source, kind, normalised)
    window = error_window_start(now)
    latest = {
        "last_seen": now,
        "last_example": EMAIL.sub("<email>", message)[:2000],
        "last_workspace_key": workspace_key[:64],
        "last_object_type": ContentType.objects.get_for_model(obj) if obj is not None else None,
        "last_object_id": str(obj.pk)[:64] if obj is not None else "",
    }
    created = not _increment(fingerprint, window, latest)
    if created:
        try:
            with transaction.atomic():
                ErrorKind.objects.create(
                    fingerprint=fingerprint,
                    source=source,
                    kind=kind,
                    message=normalised,
                    count=1,
                    first_seen=now,
                    window_start=window,
                    window_count=1,
                    pending_since=now,
                    **latest,
                )
        except IntegrityError:  # another worker created it first: count this one on its row
            created = not _increment(fingerprint, window, latest)
    error = ErrorKind.objects.get(fingerprint=fingerprint)
    if not created and error.resolved_at is not None:
        _claim(error, resolved_at=error.resolved_at)
    if _rate_crossed(error, window):
        _claim(error, rate_window=window)
    return error


def _rate_crossed(error: ErrorKind, window: datetime) -> bool:
    threshold = settings.ERROR_ALERT_RATE  # 0: no rate alerts
    return bool(threshold) and error.window_count >= threshold and error.rate_alerted_window != window


def _increment(fingerprint: str, window: datetime, latest: dict[str, Any]) -> bool:
    """Count one more on an existing kind (False if there is none). SET reads the old values."""
    return bool(
        ErrorKind.objects.filter(fingerprint=fingerprint).update(
            count=F("count") + 1,
            window_count=Case(When(window_start=window, then=F("window_count") + 1), default=Value(1)),
            window_start=window,
            **latest,
        )
    )


def _claim(error: ErrorKind, *, resolved_at: datetime | None = None, rate_window: datetime | None = None) -> bool:
    """Conditional UPDATE: exactly one of several concurrent recorders marks the alert as due (the alerts
    app's task raises it: alerts/error_alerts.py)."""
    rows = ErrorKind.objects.filter(pk=error.pk)
    if resolved_at is not None:
        reopened = {"resolved_at": None, "pending_since": resolved_at, "pending_reappeared": True}
        return rows.filter(resolved_at=resolved_at).update(**reopened) == 1
    marked = {"rate_alerted_window": rate_window, "pending_rate_window": rate_window}
    return rows.exclude(rate_alerted_window=rate_window).update(**marked) == 1


def error_kinds_resolve(*, ids: list[int], now: datetime | None = None) -> int:
    """Admin action: these are fixed. A new occurrence reopens the kind and alerts as if it were new."""
    return ErrorKind.objects.filter(pk__in=ids, resolved_at__isnull=True).update(resolved_at=now or timezone.now())


# --- Heartbeats ---------------------------------------------------------------------------------


def heartbeat_beat(*, name: str, details: dict[str, Any] | None = None) -> None:
    """Stamp the named heartbeat with the current time (what /healthz reads)."""
    now = timezone.now()
    if not Heartbeat.objects.filter(name=name).update(beat_at=now, details=details or {}):
        try:
            with transaction.atomic():
                Heartbeat.objects.create(name=name, beat_at=now, details=details or {})
        except IntegrityError:
            Heartbeat.objects.filter(name=name).update(beat_at=now, details=details or {})


def heartbeat_ages(*, now: datetime | None = None) -> dict[str, timedelta | None]:
    """Age of each known heartbeat; None for one that never beat."""
    now = now or timezone.now()
    beats = dict(Heartbeat.objects.values_list("name", "beat_at"))
    return {name: (now - beats[name]) if name in beats else None for name in Heartbeat.Name.values}
