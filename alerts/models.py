"""Alerts: something a person should act on, stored once per dedupe key with why it fired."""

from __future__ import annotations

from django.db import models


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        SNOOZED = "snoozed"
        RESOLVED = "resolved"

    class Audience(models.TextChoices):
        ADMINS = "admins", "Lifecycle admins"
        REP = "rep", "Owning rep"

    rule = models.CharField(max_length=64, help_text="The rule that fired, e.g. event_failed, needs_review.")
    dedupe_key = models.CharField(max_length=255, unique=True, help_text="rule:subject:window — fires once.")
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.ADMINS)
    workspace_key = models.CharField(max_length=64, blank=True, db_index=True)
    title = models.CharField(max_length=255)
    reason = models.TextField(help_text="Why it fired, in words.")
    context = models.JSONField(default=dict, blank=True, help_text="The events and values that triggered it.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "rule"], name="alert_status_rule")]

    def __str__(self) -> str:
        return f"[{self.rule}] {self.title}"
