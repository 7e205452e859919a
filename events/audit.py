"""Auditlog registration for events: who retried or annotated what.

The payload is excluded: it is stored once on the row and must not be copied into history, where
privacy erasure would have to chase it.
"""

from auditlog.registry import auditlog

from events.models import Event

auditlog.register(Event, exclude_fields=["payload", "lease_owner", "lease_expires_at"])
