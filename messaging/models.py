"""Dispatches: one outbound message a higher app planned (a trigger's action), as a row (DESIGN "Act").

The planner renders the message and inserts the row in its own transaction, keyed by the action's stable
key (unique: a retried or concurrent planner finds the row and adds nothing); `messaging.delivery` sends
due rows after the commit through the channel's transport, retrying with backoff. Messaging is below the
apps that plan (layer 3): `source` and `source_id` say what planned a row without a foreign key upward.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Dispatch(models.Model):
    """One message on one channel to one recipient, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead (gave up; retry from the admin)"
        SKIPPED = "skipped", "Skipped (channel off or no address)"

    key = models.CharField(
        max_length=128, unique=True, help_text="The action's stable key (firing-<id>-<channel>-<n>)."
    )
    source = models.CharField(max_length=32, help_text="What planned it (firing).")
    source_id = models.BigIntegerField(help_text="The planning row's id (the firing's).")
    channel = models.CharField(max_length=32, help_text="The transport's kind (messaging.registry).")
    recipient = models.CharField(max_length=254, blank=True, help_text="Address as the channel takes it.")
    template = models.CharField(max_length=64, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="Structured fields for the channel (in-app).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Due then (a claim moves it by a lease).")
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sender's sweep: only rows that may still go out.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status__in=["pending", "failed"]), name="dispatch_due"
            ),
            models.Index(fields=["source", "source_id"], name="dispatch_source"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient or '-'} ({self.status})"


class Unsubscribe(models.Model):
    """An address that asked for no more marketing email (messaging/unsubscribe.py): one row per address.

    Only messages a trigger's action marks `marketing` are held back; transactional messages and mail to
    reps are not. An admin deleting the row subscribes the address again.
    """

    class How(models.TextChoices):
        PAGE = "page", "The unsubscribe page"
        ONE_CLICK = "one_click", "One-click (List-Unsubscribe-Post)"
        ADMIN = "admin", "An admin"

    address = models.EmailField(max_length=254, unique=True, help_text="Lower-cased.")
    how = models.CharField(max_length=16, choices=How.choices)
    dispatch_key = models.CharField(max_length=128, blank=True, help_text="The message whose link was used.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.address} (unsubscribed {self.created_at:%Y-%m-%d})"
