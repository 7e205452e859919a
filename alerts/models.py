"""Alerts: something a person should act on, stored once per dedupe key with why it fired.

Around the alert: the rules that raise alerts (`AlertRule`, admin-configurable), the people who
receive them (`Rep`), how a workspace finds its rep (`TerritoryRule`, `RoutingCursor` for round
robin), and one `Delivery` row per channel and recipient, which is the record of every send attempt.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q


class RuleKey(models.TextChoices):
    TRIAL_STARTED = "trial_started", "New self-serve trial"
    EXISTING_ACCOUNT_TRIAL = "existing_account_trial", "New trial from an existing account"
    TRIAL_EXPIRING = "trial_expiring", "Trial expiring"
    TRIAL_EXPIRED = "trial_expired", "Trial expired without conversion"
    CONVERTED = "converted", "Converted"
    CHURNED = "churned", "Churned"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    NEEDS_REVIEW = "needs_review", "Needs review"
    SYNC_PAUSED = "sync_paused", "Salesforce sync paused"
    SYNC_DEAD_LETTER = "sync_dead_letter", "Salesforce write dead-lettered"
    EVENT_FAILED = "event_failed", "Event processing failed"
    BILLING_DRIFT = "billing_drift", "Stripe billing drift"
    ERROR_NEW_KIND = "error_new_kind", "New kind of error"
    ERROR_RATE = "error_rate", "Error rate"
    SLA_EVENT_DELAY = "sla_event_delay", "SLA: events processed late"
    SLA_SALESFORCE_DELAY = "sla_salesforce_delay", "SLA: Salesforce sync late"
    SLA_SOURCE_SILENT = "sla_source_silent", "SLA: a source went silent"


class Audience(models.TextChoices):
    ADMINS = "admins", "Lifecycle admins"
    REP = "rep", "Owning rep"


def validate_day_offsets(value: str) -> None:
    """'7,3,1': whole days before expiry, each at least 1."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts or not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise ValidationError("days_before: give whole days ≥ 1 separated by commas, e.g. 7,3,1.")


@functools.cache
def time_zone_names() -> frozenset[str]:
    """The IANA zones zoneinfo knows on this server (read from disk once: it walks the tz database)."""
    return frozenset(available_timezones())


def validate_time_zone(value: str) -> None:
    """An IANA time zone name, e.g. Europe/Berlin (what zoneinfo knows on this server)."""
    if value not in time_zone_names():
        raise ValidationError(f"time_zone: “{value}” is not an IANA time zone; use a name like Europe/Berlin.")


class AlertRule(models.Model):
    """Per-rule configuration, edited in the admin; a rule without a row uses its defaults."""

    key = models.CharField(max_length=64, unique=True, choices=RuleKey.choices)
    enabled = models.BooleanField(default=True)
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.REP)
    send_email = models.BooleanField(default=True, help_text="Email the recipient (instantly or in their digest).")
    send_slack = models.BooleanField(default=True, help_text="Post to Slack (when SLACK_WEBHOOK_URL is set).")
    days_before = models.CharField(
        max_length=64,
        default="7,3,1",
        blank=True,
        validators=[validate_day_offsets],
        help_text="trial_expiring only: days before expiry to alert at, e.g. 7,3,1.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.get_key_display()

    def day_offsets(self) -> list[int]:
        return sorted({int(part) for part in re.findall(r"\d+", self.days_before or "") if int(part) >= 1})


class Rep(models.Model):
    """A sales rep or CSM who can own workspaces and receive their alerts."""

    class Delivery(models.TextChoices):
        INSTANT = "instant", "Instant"
        DIGEST = "digest", "Daily digest"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rep")
    active = models.BooleanField(default=True, help_text="Inactive reps get no new workspaces by routing.")
    email = models.EmailField(blank=True, help_text="Where alerts go; the user's email when empty.")
    slack_member_id = models.CharField(
        max_length=32, blank=True, help_text="Slack member id (e.g. U012AB3CD) to @-mention in Slack alerts."
    )
    delivery = models.CharField(
        max_length=16,
        choices=Delivery.choices,
        default=Delivery.INSTANT,
        help_text="Instant email per alert, or one email a day with all of them.",
    )
    # Rep settings (the rep's own page, /reps/settings/, or the admin): channels, time zone, quiet hours,
    # digest hour and time away. Admin alerts and other mail are not affected by any of them.
    email_on = models.BooleanField("email alerts", default=True, help_text="Off: no alert emails to this rep.")
    slack_on = models.BooleanField("Slack alerts", default=True, help_text="Off: this rep's alerts are not posted.")
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone (e.g. Europe/Berlin): quiet hours, the digest hour and away dates are in it.",
    )
    quiet_start = models.TimeField(
        null=True, blank=True, help_text="Quiet hours start (local time). Alerts arriving then wait until they end."
    )
    quiet_end = models.TimeField(null=True, blank=True, help_text="Quiet hours end (local time); may be the next day.")
    digest_hour = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(23)],
        help_text="Local hour (0-23) of the daily digest; empty: ALERT_DIGEST_HOUR.",
    )
    away_from = models.DateField(null=True, blank=True, help_text="First day away (local date).")
    away_until = models.DateField(null=True, blank=True, help_text="Last day away (local date).")
    backup = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backing_up",
        help_text="Gets the new alerts routed to this rep while they are away (ownership stays).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def address(self) -> str:
        return self.email or self.user.email

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):  # a zone the server no longer knows: UTC, never a crash
            return ZoneInfo("UTC")

    def clean(self) -> None:
        """Settings that only make sense together, each error on the field to fix."""
        errors: dict[str, str] = {}
        if (self.quiet_start is None) != (self.quiet_end is None):
            missing = "quiet_end" if self.quiet_end is None else "quiet_start"
            errors[missing] = "Give both the start and the end of quiet hours, or neither."
        elif self.quiet_start is not None and self.quiet_start == self.quiet_end:
            errors["quiet_end"] = "Quiet hours must end at a different time than they start."
        if (self.away_from is None) != (self.away_until is None):
            missing = "away_until" if self.away_until is None else "away_from"
            errors[missing] = "Give both the first and the last day away, or neither."
        elif self.away_from is not None and self.away_until < self.away_from:
            errors["away_until"] = "The last day away cannot be before the first."
        if self.away_from is not None and self.backup_id is None:
            errors["backup"] = "Name a backup rep to receive your alerts while you are away."
        if self.backup_id is not None and self.pk is not None and self.backup_id == self.pk:
            errors["backup"] = "A rep cannot be their own backup."
        if errors:
            raise ValidationError(errors)


class TerritoryRule(models.Model):
    """Routes a workspace without an account owner by its email domain or its country."""

    name = models.CharField(max_length=100)
    rep = models.ForeignKey(Rep, on_delete=models.CASCADE, related_name="territories")
    domains = models.TextField(
        blank=True,
        help_text="Email domains, comma or newline separated; a domain also matches its subdomains.",
    )
    country = models.CharField(
        max_length=2,
        blank=True,
        help_text="ISO country code (e.g. DE, GB), matched by the email domain's country TLD (.de, .co.uk).",
    )
    priority = models.PositiveIntegerField(default=100, help_text="Lower first.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(domains="") | ~Q(country=""), name="territory_has_criterion"),
        ]

    def __str__(self) -> str:
        return self.name

    def domain_list(self) -> list[str]:
        return [part.strip().lower().lstrip("@") for part in re.split(r"[\s,;]+", self.domains) if part.strip()]


class RoutingCursor(models.Model):
    """Durable round-robin position: incremented under a row lock, so concurrent routing never repeats."""

    name = models.CharField(max_length=32, unique=True)
    position = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.position}"


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        SNOOZED = "snoozed"
        RESOLVED = "resolved"

    class RoutedBy(models.TextChoices):
        OWNER = "owner", "Account owner"
        TERRITORY = "territory", "Territory rule"
        ROUND_ROBIN = "round_robin", "Round robin"
        ADMINS = "admins", "Lifecycle admins"
        BACKUP = "backup", "Backup of a rep who is away"
        UNROUTED = "unrouted", "No active rep"

    Audience = Audience

    rule = models.CharField(max_length=64, help_text="The rule that fired, e.g. trial_expiring, needs_review.")
    dedupe_key = models.CharField(max_length=255, unique=True, help_text="rule:subject:window — fires once.")
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.ADMINS)
    workspace_key = models.CharField(max_length=64, blank=True, db_index=True)
    workspace = models.ForeignKey(
        "workspaces.Workspace", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    title = models.CharField(max_length=255)
    reason = models.TextField(help_text="Why it fired, in words.")
    context = models.JSONField(
        default=dict, blank=True, help_text="The events (ids) and values that triggered it: {'event_ids', 'values'}."
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
        help_text="The rep it was routed to; empty for admin alerts.",
    )
    routed_by = models.CharField(max_length=16, choices=RoutedBy.choices, blank=True)
    routing = models.CharField(max_length=255, blank=True, help_text="Who and why, in words.")
    # A workspace rule's alert is raised by its trigger's firing (alerts/engine.py); empty for the others.
    firing = models.ForeignKey(
        "triggers.Firing",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
        help_text="The trigger firing that raised it (why, in the engine's terms); empty for admin-only rules.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    snoozed_until = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "rule"], name="alert_status_rule"),
            models.Index(fields=["recipient", "status"], name="alert_recipient_status"),
            models.Index(fields=["snoozed_until"], condition=Q(status="snoozed"), name="alert_snoozed"),
        ]

    def __str__(self) -> str:
        return f"[{self.rule}] {self.title}"


class Delivery(models.Model):
    """One message to one recipient on one channel: every attempt is recorded here."""

    class Channel(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"

    class Mode(models.TextChoices):
        INSTANT = "instant"
        DIGEST = "digest"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead (out of attempts)"
        # The channel is off (no EMAIL_URL in production, no SLACK_WEBHOOK_URL): nothing went out; last_error says why.
        SKIPPED = "skipped", "Skipped (channel off)"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    recipient = models.CharField(max_length=254, help_text="Email address, or 'webhook' for the Slack channel.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="alert_deliveries"
    )
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.INSTANT)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Due time; also a lease while sending.")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel", "recipient"], name="delivery_unique_recipient"),
        ]
        indexes = [
            models.Index(
                fields=["mode", "next_attempt_at"], condition=Q(status__in=["pending", "failed"]), name="delivery_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}: {self.status}"


def reporting_currency_default() -> str:
    return settings.REPORTING_CURRENCY


class ExchangeRate(models.Model):
    """An admin-kept rate for money shown on the rep pages: one unit of `currency` is `rate` units of
    `reporting_currency`. Never fetched from anywhere: the pages say "at admin-kept rates of <as_of>", and a
    currency without a rate to the current REPORTING_CURRENCY is shown apart, never converted."""

    currency = models.CharField(
        max_length=3, validators=[RegexValidator(r"^[A-Z]{3}$", "Three capital letters (ISO 4217), e.g. EUR.")]
    )
    reporting_currency = models.CharField(
        max_length=3,
        default=reporting_currency_default,
        validators=[RegexValidator(r"^[A-Z]{3}$", "Three capital letters (ISO 4217), e.g. USD.")],
        help_text="The currency it converts to; only rates to the current REPORTING_CURRENCY count.",
    )
    rate = models.DecimalField(
        max_digits=18,
        decimal_places=8,
        validators=[MinValueValidator(Decimal("0.00000001"))],
        help_text="Reporting-currency units for one unit of this currency, e.g. 1.08 for EUR → USD.",
    )
    as_of = models.DateField(help_text="The day the rate was taken; the rep pages show it beside converted totals.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["reporting_currency", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "reporting_currency"], name="exchange_rate_unique_pair"),
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(condition=~Q(currency=F("reporting_currency")), name="exchange_rate_two_currencies"),
        ]

    def __str__(self) -> str:
        return f"1 {self.currency} = {self.rate.normalize():f} {self.reporting_currency} ({self.as_of:%Y-%m-%d})"
