"""The Salesforce outbox: the latest desired state of each object Salesforce must see.

One row per (object type, external id). Local changes overwrite the row's payload and bump its
version (many local changes, one write); the worker sends a version and marks it synced only if no
newer version arrived meanwhile. Every attempt's outcome is on the row: state, Salesforce id,
errorCode, attempts, next attempt.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class OutboxItem(models.Model):
    class ObjectType(models.TextChoices):
        ACCOUNT = "Account"
        LEAD = "Lead"
        LEAD_CONVERSION = "LeadConversion", "Lead conversion"
        CONTACT = "Contact"
        WORKSPACE = "Workspace__c", "Workspace"
        TASK = "Task", "Task (a rep's upgrade call)"
        DELETION = "Deletion", "Deletion (privacy erasure)"

    class State(models.TextChoices):
        PENDING = "pending"
        SYNCED = "synced"
        RETRY = "retry"
        DEAD = "dead", "Dead letter"
        DRY_RUN = "dry_run", "Dry run (recorded, not sent)"
        HELD = "held", "Held (outside the pilot)"
        ERASED = "erased", "Erased (deleted in Salesforce by a privacy erasure)"

    object_type = models.CharField(max_length=20, choices=ObjectType.choices)
    external_id = models.CharField(max_length=80, help_text="Lifecycle_Engine_ID__c: the engine's own id.")
    workspace_key = models.CharField(max_length=64, blank=True, help_text="Workspace it belongs to (pilot, admin).")
    payload = models.JSONField(help_text="Desired Salesforce field values, as they will be sent.")
    version = models.PositiveIntegerField(default=1)
    sent_version = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    depends_on = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dependents",
        help_text="Not sent before this row is synced (e.g. a contact made by a lead conversion).",
    )
    salesforce_id = models.CharField(max_length=18, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["object_type", "external_id"], name="outbox_one_row_per_object"),
        ]
        indexes = [
            models.Index(
                fields=["object_type", "next_attempt_at"],
                condition=Q(state__in=["pending", "retry"]),
                name="outbox_due",
            ),
            models.Index(fields=["state", "object_type"], name="outbox_state_type"),
            models.Index(fields=["workspace_key"], name="outbox_workspace"),
        ]

    def __str__(self) -> str:
        return f"{self.object_type} {self.external_id} ({self.state})"


class SyncControl(models.Model):
    """The sync's own switchboard (a single row): pause, API usage, last success, the drain trigger, and
    the progress of releasing held rows after the pilot widened.

    The trigger fields make the drain prompt and single: `drain_dirty` says outbox rows were recorded
    since the drainer last looked; the drainer holds a lease (`drain_owner`, `drain_lease_expires_at`)
    so only one runs at a time; `drain_enqueued_at` says a drain task is already in the queue.
    """

    paused_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=255, blank=True)
    api_used = models.PositiveIntegerField(null=True, blank=True)
    api_max = models.PositiveIntegerField(null=True, blank=True)
    api_checked_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    drain_dirty = models.BooleanField(default=False, help_text="Outbox rows recorded since the drainer last looked.")
    drain_owner = models.CharField(max_length=64, blank=True, help_text="The drainer holding the lease.")
    drain_lease_expires_at = models.DateTimeField(null=True, blank=True)
    drain_enqueued_at = models.DateTimeField(null=True, blank=True, help_text="A drain task waits in the queue.")
    # The release of held rows after the pilot widened or ended (salesforce/pilot.py): one pass over them.
    pilot_key = models.CharField(
        max_length=255, blank=True, help_text="The pilot the held rows were last gone over against."
    )
    pilot_cursor = models.BigIntegerField(
        null=True, blank=True, help_text="The pass goes on after this held row's id; empty: the pass is done."
    )
    pilot_started_at = models.DateTimeField(null=True, blank=True)
    pilot_finished_at = models.DateTimeField(null=True, blank=True)
    pilot_total = models.PositiveIntegerField(default=0, help_text="Rows held when the pass began.")
    pilot_looked = models.PositiveIntegerField(default=0, help_text="Held rows the pass has gone over.")
    pilot_released = models.PositiveIntegerField(
        default=0, help_text="Rows the pass released (now in the pilot, or a pilot record depends on them)."
    )

    class Meta:
        verbose_name = "Salesforce sync control"

    def __str__(self) -> str:
        return "Salesforce sync"
