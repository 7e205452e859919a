"""Applying stored Marketo lead events (CONTRACT §5) through the linking service."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from events.jsonbody import PayloadInvalid
from events.models import Event
from events.schemas import parse_marketo_body
from events.services import MARKETO_TYPE
from failures.services import error_record
from linking.services import marketo_lead_upsert
from workspaces.actors import acting_as_system


def marketo_events_apply(*, event_ids: Sequence[int] | None = None) -> int:
    """Apply new Marketo lead events (the given ids, or every new one); return how many were applied."""
    with transaction.atomic(), acting_as_system():
        events = Event.objects.select_for_update().filter(type=MARKETO_TYPE, status=Event.Status.NEW)
        if event_ids is not None:
            events = events.filter(pk__in=event_ids)
        applied = 0
        for event in events:
            try:
                lead = parse_marketo_body(json.dumps(event.payload).encode())
            except PayloadInvalid as exc:
                event.status, event.notes = (
                    Event.Status.REVIEW,
                    f"Stored payload no longer validates: {exc.fields}",
                )
                error_record(source="processing", kind="PayloadInvalid", message=event.notes, obj=event)
            else:
                marketo_lead_upsert(
                    lead_id=lead["lead_id"],
                    email=lead["email"],
                    first_name=lead.get("first_name", ""),
                    last_name=lead.get("last_name", ""),
                    company=lead.get("company", ""),
                )
                event.status, event.completed_at = Event.Status.COMPLETED, timezone.now()
                applied += 1
            event.save(update_fields=["status", "notes", "completed_at"])
    return applied
