"""Daily usage rollups: one row per workspace, feature, product and UTC day.

Rows only ever grow by increments (`triggers.services.usage_rollup`), so they can be summed over any
range of days. Distinct users cannot be summed, so they live in their own table, one row per user
seen that day, to be counted over whatever range a cohort or trigger needs.
"""

from __future__ import annotations

from django.db import models


class UsageDaily(models.Model):
    workspace_key = models.CharField(max_length=64)
    feature = models.CharField(max_length=100)
    product = models.CharField(max_length=64, blank=True, help_text='"" when the event named none.')
    day = models.DateField(help_text="UTC day of the events' occurred_at.")
    events = models.PositiveIntegerField(default=0, help_text="Number of usage events.")
    count = models.BigIntegerField(default=0, help_text="Sum of data.count (1 per event by default).")
    duration_seconds = models.FloatField(default=0.0)
    errors = models.PositiveIntegerField(default=0, help_text='Events with outcome "error".')
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
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
        constraints = [
            models.UniqueConstraint(
                fields=["workspace_key", "feature", "product", "day", "user_email"],
                name="usagedailyuser_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_email} {self.feature} {self.day}"
