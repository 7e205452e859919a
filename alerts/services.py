"""Raising alerts idempotently: a unique dedupe key means an alert fires once, whoever asks twice."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from alerts.models import Alert


def alert_raise(
    *,
    rule: str,
    dedupe_key: str,
    title: str,
    reason: str,
    workspace_key: str = "",
    audience: str = Alert.Audience.ADMINS,
    context: dict[str, Any] | None = None,
) -> tuple[Alert, bool]:
    """Create the alert unless one with this dedupe key exists; return (alert, created)."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                dedupe_key=dedupe_key,
                title=title[:255],
                reason=reason,
                workspace_key=workspace_key,
                audience=audience,
                context=context or {},
            )
            return alert, True
    except IntegrityError:
        return Alert.objects.get(dedupe_key=dedupe_key), False
