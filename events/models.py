"""The event cache: every webhook that passed its signature check, as received.

The row, not the task queue, is the record of work (DESIGN.md): its status, retry count, next
attempt and lease say what happens to it next, so a lost task or a killed worker loses nothing.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Event(models.Model):
    class Source(models.TextChoices):
        PROVISIONING = "provisioning"
        STRIPE = "stripe"
        MARKETO = "marketo"

    class Status(models.TextChoices):
        NEW = "new"
        PROCESSING = "processing"
        COMPLETED = "completed"
        ERROR = "error"
        REVIEW = "review"
        IGNORED = "ignored"
        REJECTED = "rejected"

    #: Statuses the pipeline still has to act on.
    OPEN_STATUSES = (Status.NEW, Status.PROCESSING, Status.ERROR)

    source = models.CharField(max_length=16, choices=Source.choices)
    external_id = models.CharField(max_length=255, help_text="webhook-id or the provider's event id.")
    type = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="When it happened (orders the fold).")
    received_at = models.DateTimeField(default=timezone.now)
    workspace_key = models.CharField(max_length=64, blank=True, help_text="The workspace_id it is about.")
    payload = models.JSONField(null=True, blank=True, help_text="Body as received; text when not JSON.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    retry_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    payload_scrubbed_at = models.DateTimeField(
        null=True, blank=True, help_text="When personal data left the payload (retention or erasure: docs/privacy.md)."
    )
    suppressed = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Names an erased person: stored as ignored with the person scrubbed, never applied.",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # Idempotency: the database, not a read-then-write, decides what is a duplicate.
            models.UniqueConstraint(fields=["source", "external_id"], name="event_unique_source_external_id"),
            models.CheckConstraint(
                condition=Q(status__in=["new", "processing", "completed", "error", "review", "ignored", "rejected"]),
                name="event_status_valid",
            ),
        ]
        indexes = [
            # The fold reads one workspace's events in time order.
            models.Index(fields=["workspace_key", "occurred_at"], name="event_workspace_time"),
            # The sweeper: open work by due time, kept small by the condition.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["new", "processing", "error"]),
                name="event_open_due",
            ),
            models.Index(fields=["status", "received_at"], name="event_status_received"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id} ({self.type or 'unknown'})"


class WebhookBatch(models.Model):
    """A batch received on /webhooks/provisioning/batch/ (CONTRACT §2b), by its own webhook-id: the same batch
    again is a duplicate. Written in the transaction that stores its events, so the two cannot disagree."""

    webhook_id = models.CharField(max_length=255, unique=True)
    received_at = models.DateTimeField(default=timezone.now)
    events = models.PositiveIntegerField(default=0, help_text="Events it carried.")
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "webhook batches"

    def __str__(self) -> str:
        return f"batch {self.webhook_id} ({self.events} events)"


class SourceDay(models.Model):
    """Events received per source and UTC day, rolled up incrementally (by event id) for the silence SLA,
    so the check reads a few rows a source instead of scanning the event table."""

    source = models.CharField(max_length=16)
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        db_table = "ops_sourceday"
        constraints = [models.UniqueConstraint(fields=["source", "day"], name="sourceday_unique")]

    def __str__(self) -> str:
        return f"{self.source} {self.day}: {self.count}"


class RollupCursor(models.Model):
    """How far (by event id) a rollup has read; locked while it advances, so two runs never count twice."""

    name = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0)

    class Meta:
        db_table = "ops_rollupcursor"

    def __str__(self) -> str:
        return f"{self.name}: {self.position}"
