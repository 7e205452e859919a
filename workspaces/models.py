"""The customer record: workspaces and the lead, account and contact they link to.

Emails and domains are stored normalised (trimmed, lower-case); check constraints make the database
refuse anything else, so the unique constraints really mean "one per normalised email/domain".
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower, Trim

from workspaces.auditing import AuditSnapshot


def _normalised(field: str) -> Q:
    return Q(**{field: Lower(Trim(field))})


class Account(AuditSnapshot, models.Model):
    """A company, matched to workspaces by its email domain."""

    name = models.CharField(max_length=255)
    domain = models.CharField(
        max_length=253,
        unique=True,
        null=True,
        blank=True,
        help_text="Normalised email domain; empty for a person on a free-mail address (never matched).",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_accounts",
        help_text="The rep who owns the account in Salesforce.",
    )
    csm = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="success_accounts",
        verbose_name="CSM",
        help_text="The customer success manager: triggers for the CSM (outreach, escalations) reach them.",
    )
    salesforce_id = models.CharField(max_length=18, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=_normalised("domain"), name="account_domain_normalised"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.domain})"


class Contact(AuditSnapshot, models.Model):
    """A person on an account; made when a paying workspace's lead is converted."""

    email = models.EmailField(max_length=254, unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="contacts")
    salesforce_id = models.CharField(max_length=18, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(condition=_normalised("email"), name="contact_email_normalised"),
        ]

    def __str__(self) -> str:
        return self.email


class Lead(AuditSnapshot, models.Model):
    """A prospect, one per normalised email, from a trial sign-up or from Marketo."""

    class Source(models.TextChoices):
        SELF_SERVE_TRIAL = "Self-Serve Trial"
        MARKETO = "Marketo"

    email = models.EmailField(max_length=254, unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    company = models.CharField(max_length=255, blank=True)
    lead_source = models.CharField(max_length=40, choices=Source.choices, default=Source.SELF_SERVE_TRIAL)
    marketo_lead_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    converted_account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="converted_leads"
    )
    converted_contact = models.OneToOneField(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="converted_from"
    )
    salesforce_id = models.CharField(max_length=18, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(condition=_normalised("email"), name="lead_email_normalised"),
            # Converted means converted into something: the two fields move together.
            models.CheckConstraint(
                condition=Q(converted_at__isnull=True, converted_contact__isnull=True)
                | Q(converted_at__isnull=False, converted_contact__isnull=False),
                name="lead_conversion_complete",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def converted(self) -> bool:
        return self.converted_at is not None


class Workspace(AuditSnapshot, models.Model):
    """A self-serve workspace; its lifecycle fields are the fold of its events."""

    class Status(models.TextChoices):
        TRIAL = "trial"
        PAID = "paid"
        CHURNED = "churned"

    workspace_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    email = models.EmailField(max_length=254, blank=True, help_text="Owner email, normalised.")
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    company = models.CharField(max_length=255, blank=True)
    plan = models.CharField(max_length=64, blank=True)
    mrr = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    subscription_id = models.CharField(max_length=255, blank=True)
    billing_interval = models.CharField(max_length=16, blank=True)
    trial_started_at = models.DateTimeField(null=True, blank=True)
    trial_expires_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    churned_at = models.DateTimeField(null=True, blank=True)
    churn_reason = models.CharField(max_length=255, blank=True)
    trial_history = models.JSONField(default=list, blank=True, help_text="Trials started while paid.")
    at_risk = models.BooleanField(
        default=False, help_text="A payment failed and no later conversion or churn has settled it."
    )
    at_risk_since = models.DateTimeField(null=True, blank=True, help_text="When the first unsettled payment failed.")
    renews_at = models.DateTimeField(null=True, blank=True, help_text="Next renewal of the Stripe subscription.")
    needs_review = models.BooleanField(default=False)
    review_reasons = models.JSONField(default=list, blank=True)
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="workspaces")
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="workspaces")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="workspaces")
    salesforce_id = models.CharField(max_length=18, blank=True)
    salesforce_state = models.CharField(max_length=16, blank=True, help_text="State of its Salesforce outbox row.")
    salesforce_synced_at = models.DateTimeField(null=True, blank=True)
    linked_by_admin = models.BooleanField(
        default=False, help_text="Lead/account were chosen by an admin: the matching rules leave them alone."
    )
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="Latest applied event time.")
    timezone = models.CharField(
        max_length=64, blank=True, help_text="IANA zone from trial.started (e.g. Europe/Berlin); empty: UTC."
    )
    acquisition_channel = models.CharField(max_length=64, blank=True, help_text="From trial.started.")
    campaign = models.CharField(max_length=128, blank=True, help_text="From trial.started.")
    # The customer's rep: assigned once (the first time one of its alerts is routed without an account
    # owner) and kept, so every alert about this customer reaches the same person (alerts/routing.py).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_workspaces",
        help_text="The rep who owns this customer when its account has no owner in Salesforce; kept once assigned.",
    )
    owner_since = models.DateTimeField(null=True, blank=True)
    owner_why = models.CharField(max_length=255, blank=True, help_text="How the owner was chosen, in words.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace_id"]
        constraints = [
            models.CheckConstraint(condition=_normalised("email"), name="workspace_email_normalised"),
            models.CheckConstraint(condition=Q(status__in=["trial", "paid", "churned"]), name="workspace_status_valid"),
            models.CheckConstraint(condition=Q(mrr__isnull=True) | Q(mrr__gte=0), name="workspace_mrr_not_negative"),
        ]
        indexes = [
            # Rep dashboard and API: trials expiring soon.
            models.Index(fields=["status", "trial_expires_at"], name="workspace_status_expiry"),
            models.Index(fields=["email"], name="workspace_email"),
            models.Index(fields=["updated_at"], condition=Q(needs_review=True), name="workspace_needs_review"),
        ]

    def __str__(self) -> str:
        return self.workspace_id


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
        db_table = "linking_reviewitem"
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


class WorkspaceLock(models.Model):
    """One row per workspace key, locked while that workspace's state is written: its events folded (the
    processing run) or its usage rolled up and its behaviour re-evaluated (usage/rollups.py).

    The workspace row itself may not exist yet (its first event creates it), so the processor locks
    this row instead: two workers can never fold the same workspace at once, and the one that waited
    re-reads every event after the lock is granted.
    """

    workspace_key = models.CharField(max_length=64, primary_key=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "events_workspacelock"

    def __str__(self) -> str:
        return self.workspace_key
