"""A person's data export: every row the engine holds about or mentioning them, as JSON-ready data."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import serializers
from django.db.models import QuerySet
from django.utils import timezone

from privacy.identity import email_hash
from privacy.models import Tombstone
from privacy.records import person_holdings

#: Rows shown with only these fields: the rest is about staff (who received an alert), not the person.
LIMITED_FIELDS = {"deliveries": ("alert", "channel", "mode", "status", "attempts", "sent_at", "created_at")}
SECTIONS = ("leads", "contacts", "workspaces", "accounts", "events", "review_items", "alerts", "deliveries",
            "usage", "outbox", "audit_log", "admin_log", "firings", "dispatches", "unsubscribes")  # fmt: skip


def _rows(name: str, queryset: QuerySet) -> list[dict[str, Any]]:
    fields = LIMITED_FIELDS.get(name)
    return serializers.serialize("python", queryset.order_by("pk"), fields=fields)


def person_export(*, email: str) -> dict[str, Any]:
    """Everything held about the (normalised) address; serialise with DjangoJSONEncoder."""
    holdings = person_holdings(email=email)
    document: dict[str, Any] = {
        "email": email,
        "generated_at": timezone.now(),
        "erased": Tombstone.objects.filter(email_hash=email_hash(email)).exists(),
        "retention": {
            "event_payload_days": settings.EVENT_PAYLOAD_RETENTION_DAYS or None,
            "policy": "docs/privacy.md",
        },
    }
    for name in SECTIONS:
        document[name] = _rows(name, getattr(holdings, name))
    return document
