"""The review queue: what the engine could not decide alone, with the reason and the evidence."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from workspaces.auditing import AuditSnapshot


class ReviewItem(AuditSnapshot, models.Model):
    class Kind(models.TextChoices):
        NO_TRIAL_DATA = "no_trial_data", "No trial data"
        CONFLICTING_DATA = "conflicting_data", "Conflicting data"
        NO_ACCOUNT_MATCH = "no_account_match", "No account match"
        PROCESSING_FAILED = "processing_failed", "Processing failed"
        REJECTED_EVENT = "rejected_event", "Rejected event"
        SYNC_FAILED = "sync_failed", "Salesforce sync failed"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    dedupe_key = models.CharField(
        max_length=200,
        help_text="Identifies the question (kind and evidence): once answered, the same question is not asked again.",
    )
    reason = models.TextField(help_text="What is wrong, precisely enough to act on.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    workspace = models.ForeignKey(
        "workspaces.Workspace", null=True, blank=True, on_delete=models.CASCADE, related_name="review_items"
    )
    lead = models.ForeignKey(
        "workspaces.Lead", null=True, blank=True, on_delete=models.SET_NULL, related_name="review_items"
    )
    events = models.ManyToManyField("events.Event", blank=True, related_name="review_items")
    resolution_note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Re-processing a workspace must neither pile up copies of a question nor re-ask one an
            # admin already resolved.
            models.UniqueConstraint(fields=["workspace", "dedupe_key"], name="review_unique_question"),
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True) | Q(status="resolved", resolved_at__isnull=False),
                name="review_resolved_has_time",
            ),
        ]
        indexes = [models.Index(fields=["status", "kind"], name="review_status_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.reason[:60]}"
