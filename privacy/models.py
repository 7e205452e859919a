"""Privacy records: who asked for what about whom, and the tombstones of erased people.

Neither model keeps an email once a request is carried out: a request holds the address only while it
is pending, and a tombstone is a salted hash (`privacy.identity.email_hash`), so the engine can
recognise a person it erased without being able to say who they were.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Tombstone(models.Model):
    """An erased person. Events that name them are stored suppressed, never applied."""

    email_hash = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the normalised email.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Tombstone #{self.pk} ({self.email_hash[:12]}…)"


class DataRequest(models.Model):
    """A data subject's request (export or erasure), recorded with who asked and when it was done."""

    class Kind(models.TextChoices):
        EXPORT = "export", "Export everything held"
        ERASE = "erase", "Erase (anonymise and tombstone)"

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    email = models.EmailField(
        blank=True, help_text="The person's email, held only until the request is carried out; then blank."
    )
    email_hash = models.CharField(max_length=64, db_index=True, help_text="Salted hash of the normalised email.")
    note = models.TextField(blank=True, help_text="Ticket or reference; never the person's data.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_name = models.CharField(
        max_length=150, help_text="Username, or the operating-system user for a command run without --by."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="What was found or changed, as counts.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Carried out means the address is gone: only the hash remains.
            models.CheckConstraint(condition=~Q(status="done") | Q(email=""), name="datarequest_done_keeps_no_email"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} request #{self.pk}"
