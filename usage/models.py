"""Behaviour state derived from usage: tickets and plan-limit rollups, each workspace's profile, and the
cohort and stage definitions with the history of who was in them, when, and why.

Definitions are data (a condition tree, `usage.conditions`), versioned: every membership and stage period
records the version that decided it and the metric values it saw, so a page can say why.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class SupportTicket(models.Model):
    """One support ticket of a workspace, from `support.ticket_opened` / `support.ticket_resolved`."""

    class Priority(models.TextChoices):
        LOW = "low"
        NORMAL = "normal"
        HIGH = "high"
        URGENT = "urgent"

    workspace_key = models.CharField(max_length=64)
    ticket_id = models.CharField(max_length=128)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    opened_at = models.DateTimeField(null=True, blank=True, help_text="Empty until the opening event arrives.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    satisfaction = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1–5, when resolved.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace_key", "ticket_id"], name="supportticket_unique_key"),
        ]
        indexes = [models.Index(fields=["workspace_key", "opened_at"], name="supportticket_workspace_opened")]

    def __str__(self) -> str:
        return f"{self.workspace_key} ticket {self.ticket_id}"


class PlanLimitDaily(models.Model):
    """How often a workspace hit a plan limit on a day (`plan.limit_reached`), summable over any days."""

    workspace_key = models.CharField(max_length=64)
    limit = models.CharField(max_length=64, help_text="e.g. seats, envelopes, api_calls.")
    day = models.DateField(help_text="The workspace's local day of the events.")
    hits = models.PositiveIntegerField(default=0)
    last_hit_at = models.DateTimeField()

    class Meta:
        verbose_name = "plan-limit hits per day"
        verbose_name_plural = "plan-limit hits per day"
        constraints = [
            models.UniqueConstraint(fields=["workspace_key", "limit", "day"], name="planlimitdaily_unique_key"),
        ]
        indexes = [models.Index(fields=["workspace_key", "day"], name="planlimitdaily_workspace_day")]

    def __str__(self) -> str:
        return f"{self.workspace_key} {self.limit} {self.day}: {self.hits}"


class Definition(models.Model):
    """A named condition over a workspace's profile and lifecycle fields, edited as data."""

    key = models.SlugField(max_length=64, unique=True, help_text="Stable name used by the API, triggers and files.")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True, help_text="What it means, for the people who act on it.")
    condition = models.JSONField(
        help_text='A condition tree: {"all": [...]}, {"any": [...]}, {"not": {...}} over leaves like '
        '{"metric": "active_days_7d", "op": ">=", "value": 4} (docs/metrics.md).'
    )
    version = models.PositiveIntegerField(default=1, help_text="Goes up by one each time the condition changes.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class Cohort(Definition):
    """A group a workspace is in while its condition holds (any number at once)."""

    class Meta:
        ordering = ["key"]


class Stage(Definition):
    """A lifecycle stage: a workspace is in exactly one, the first in `order` whose condition holds."""

    order = models.PositiveIntegerField(
        help_text="Evaluation order, lowest first: the fall-into stages (at risk, dormant) come before the "
        "progression, which is checked from its furthest stage back to the first."
    )

    class Meta:
        ordering = ["order", "key"]


class Profile(models.Model):
    """A workspace's latest evaluation: its metric values, its stage, and when time alone may change it."""

    workspace_key = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict, help_text="Metric name → value, as last evaluated.")
    timezone = models.CharField(max_length=64, default="UTC", help_text="The zone its day windows are counted in.")
    day = models.DateField(help_text="The local day it was evaluated for.")
    stage = models.ForeignKey(Stage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    stage_since = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField()
    next_due_at = models.DateTimeField(
        null=True, blank=True, help_text="When its windows next move (its next local midnight); empty: only an event."
    )

    class Meta:
        # A constraint, not unique=True: that adds a second (LIKE-pattern) index on PostgreSQL that nothing
        # uses and every insert writes.
        constraints = [models.UniqueConstraint(fields=["workspace_key"], name="profile_unique_workspace")]
        indexes = [models.Index(fields=["next_due_at"], name="profile_next_due")]

    def __str__(self) -> str:
        return f"Profile of {self.workspace_key}"


class Period(models.Model):
    """A time a workspace spent in a cohort or stage, with the version and values that decided it."""

    workspace_key = models.CharField(max_length=64)
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    entered_version = models.PositiveIntegerField()
    exited_version = models.PositiveIntegerField(null=True, blank=True)
    entered_why = models.JSONField(default=dict, help_text="The evaluation that put it in: each condition's value.")
    exited_why = models.JSONField(default=dict, blank=True, help_text="The evaluation that took it out.")

    class Meta:
        abstract = True


class CohortMembership(Period):
    # No index of its own: (cohort, entered_at) below leads with it. Each index is written by every insert.
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="memberships", db_index=False)

    class Meta:
        ordering = ["-entered_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace_key", "cohort"], condition=Q(exited_at__isnull=True), name="membership_one_open"
            ),
        ]
        indexes = [
            models.Index(fields=["workspace_key", "exited_at"], name="membership_workspace"),
            models.Index(fields=["cohort", "entered_at"], name="membership_cohort_entered"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_key} in {self.cohort.key}"


class StagePeriod(Period):
    # No index of its own: (stage, entered_at) below leads with it.
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="periods", db_index=False)
    # Never filtered on; only a stage's deletion looks for it (one scan, a rare admin action), while every
    # period inserted would write an entry (bench/behaviour.py's first pass inserts 100,000).
    previous = models.ForeignKey(
        Stage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        ordering = ["-entered_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace_key"], condition=Q(exited_at__isnull=True), name="stageperiod_one_open"
            ),
        ]
        indexes = [
            models.Index(fields=["workspace_key", "entered_at"], name="stageperiod_workspace"),
            models.Index(fields=["stage", "entered_at"], name="stageperiod_stage_entered"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_key} {self.stage.key} since {self.entered_at:%Y-%m-%d}"


class UsageDaily(models.Model):
    workspace_key = models.CharField(max_length=64)
    feature = models.CharField(max_length=100)
    product = models.CharField(max_length=64, blank=True, help_text='"" when the event named none.')
    day = models.DateField(help_text="The workspace's local day of the events (UTC when its zone was unknown).")
    events = models.PositiveIntegerField(default=0, help_text="Number of usage events.")
    count = models.BigIntegerField(default=0, help_text="Sum of data.count (1 per event by default).")
    duration_seconds = models.FloatField(default=0.0)
    errors = models.PositiveIntegerField(default=0, help_text='Events with outcome "error".')
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        db_table = "triggers_usagedaily"
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        constraints = [
            # The upsert's conflict target: increments land on one row per key.
            models.UniqueConstraint(
                fields=["workspace_key", "feature", "product", "day"], name="usagedaily_unique_key"
            ),
        ]
        indexes = [
            # Cohorts and triggers read one workspace's recent days.
            models.Index(fields=["workspace_key", "day"], name="usagedaily_workspace_day"),
        ]

    def __str__(self) -> str:
        product = f"/{self.product}" if self.product else ""
        return f"{self.workspace_key} {self.feature}{product} {self.day}"


class UsageDailyUser(models.Model):
    """A user who used a feature on a day: distinct active users are counted from these rows."""

    workspace_key = models.CharField(max_length=64)
    feature = models.CharField(max_length=100)
    product = models.CharField(max_length=64, blank=True)
    day = models.DateField()
    user_email = models.EmailField(max_length=254, help_text="Lower-case.")

    class Meta:
        db_table = "triggers_usagedailyuser"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace_key", "feature", "product", "day", "user_email"],
                name="usagedailyuser_unique_key",
            ),
        ]
        indexes = [
            # Sessions and seats read a workspace's (day, user) pairs of a window: an index-only range scan
            # already in (workspace, day, user) order, so the DISTINCT streams instead of sorting.
            models.Index(fields=["workspace_key", "day", "user_email"], name="usagedailyuser_ws_day_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_email} {self.feature} {self.day}"
