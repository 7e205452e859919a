"""The failure ledger: heartbeats of the scheduled work, and failures grouped by kind.

A heartbeat is a row a scheduled task stamps each time it runs; `/healthz` reads its age, so a task
cluster that stopped (or a sweeper that keeps crashing) shows as a stale row, not as silence.
An error kind is one row per fingerprint (source, exception class, normalised message): a storm of
identical failures is one row with a count, and a new row is what tells an admin something new broke.
The tables keep the names they had in `ops` (Meta.db_table), where they began.
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import models


class Heartbeat(models.Model):
    class Name(models.TextChoices):
        QUEUE = "queue", "Task queue (a scheduled task ran)"
        SWEEPER = "sweeper", "Event sweeper"

    name = models.CharField(max_length=32, primary_key=True, choices=Name.choices)
    beat_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True, help_text="What the last run reported.")

    class Meta:
        db_table = "ops_heartbeat"

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class ErrorKind(models.Model):
    class Source(models.TextChoices):
        PROCESSING = "processing", "Event processing"
        SYNC = "sync", "Salesforce sync"
        DELIVERY = "delivery", "Alert delivery"

    fingerprint = models.CharField(max_length=64, unique=True, help_text="Hash of source, kind and message.")
    source = models.CharField(max_length=16, choices=Source.choices)
    kind = models.CharField(max_length=100, help_text="Exception class or the remote error code.")
    message = models.TextField(help_text="The message with ids, numbers and addresses replaced by placeholders.")
    count = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_example = models.TextField(blank=True, help_text="The latest message as it was (email addresses masked).")
    last_workspace_key = models.CharField(max_length=64, blank=True)
    last_object_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    last_object_id = models.CharField(max_length=64, blank=True)
    window_start = models.DateTimeField(null=True, blank=True, help_text="Start of the current rate window.")
    window_count = models.PositiveIntegerField(default=0, help_text="Occurrences in the current rate window.")
    rate_alerted_window = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="Marked fixed by an admin; a new occurrence reopens it and alerts again."
    )
    # An alert due, raised by the alerts app's task (alerts/error_alerts.py) and then cleared.
    pending_since = models.DateTimeField(
        null=True, blank=True, help_text="New (first seen) or reappeared (resolved at): the alert is due."
    )
    pending_reappeared = models.BooleanField(default=False)
    pending_rate_window = models.DateTimeField(null=True, blank=True, help_text="Rate alert due for this window.")

    class Meta:
        db_table = "ops_errorkind"
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["source", "last_seen"], name="errorkind_source_seen")]

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}: {self.message[:80]}"
