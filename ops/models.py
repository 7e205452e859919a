"""What operations keeps: heartbeats of the scheduled work, and failures grouped by kind.

A heartbeat is a row a scheduled task stamps each time it runs; `/healthz` reads its age, so a task
cluster that stopped (or a sweeper that keeps crashing) shows as a stale row, not as silence.
An error kind is one row per fingerprint (source, exception class, normalised message): a storm of
identical failures is one row with a count, and a new row is what tells an admin something new broke.
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

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["source", "last_seen"], name="errorkind_source_seen")]

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}: {self.message[:80]}"


class Dashboard(Heartbeat):
    """Only the "view" permission of the /ops/ page, so roles grant it like any model's. A proxy (of a
    small table) rather than a model without a table: code that walks every model can still query it."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        verbose_name = "operations dashboard"

    def __str__(self) -> str:
        return "Operations dashboard"


class SourceDay(models.Model):
    """Events received per source and UTC day, rolled up incrementally (by event id) for the silence SLA,
    so the check reads a few rows a source instead of scanning the event table."""

    source = models.CharField(max_length=16)
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "day"], name="sourceday_unique")]

    def __str__(self) -> str:
        return f"{self.source} {self.day}: {self.count}"


class RollupCursor(models.Model):
    """How far (by event id) a rollup has read; locked while it advances, so two runs never count twice."""

    name = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.position}"
