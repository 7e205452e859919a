"""django-q2 entry point of the failure ledger (scheduled every minute, no catch-up)."""

from __future__ import annotations

from django.utils import timezone

from failures.services import heartbeat_beat


def heartbeat() -> str:
    """Proves the cluster takes and runs scheduled tasks: /healthz reads the row's age."""
    now = timezone.now()
    heartbeat_beat(name="queue")
    return now.isoformat()
