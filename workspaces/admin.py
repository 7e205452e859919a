"""Admin for the customer record: workspaces and the leads, accounts and contacts they link to.

A workspace's lifecycle fields are the fold of its events, so they are read-only here: an edit would
be overwritten by the next event anyway (DESIGN.md, "state is derived, not patched").
"""

from __future__ import annotations

from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from django import forms
from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from workspaces.admin_display import compact_time
from workspaces.models import Account, Contact, Lead, Workspace

#: How many of a workspace's events its change page lists.
RECENT_EVENTS_LIMIT = 50

_LIFECYCLE_FIELDS = (
    "workspace_id",
    "status",
    "plan",
    "mrr",
    "currency",
    "subscription_id",
    "billing_interval",
    "trial_started_at",
    "trial_expires_at",
    "converted_at",
    "churned_at",
    "churn_reason",
    "trial_history",
    "needs_review",
    "review_reasons",
    "last_event_at",
)


class NormalisedForm(forms.ModelForm):
    """Trim and lower-case the fields the database insists are normalised (check constraints)."""

    normalised_fields: tuple[str, ...] = ()

    def clean(self) -> dict[str, Any]:
        """Normalise before the model's constraints are checked, so "Ann@X.com " is accepted."""
        cleaned = super().clean()
        for name in self.normalised_fields:
            if isinstance(cleaned.get(name), str):
                cleaned[name] = cleaned[name].strip().lower()
        return cleaned


class EmailForm(NormalisedForm):
    normalised_fields = ("email",)


class AccountForm(NormalisedForm):
    normalised_fields = ("domain",)


def _event_row(event: Any) -> tuple[str, str, str, str, str, str]:
    """One row of the recent-events table; the event id links to its admin page."""
    url = reverse("admin:events_event_change", args=[event.pk])
    return (url, str(event.pk), str(event.received_at), event.source, event.type or "-", event.status)


@admin.register(Workspace)
class WorkspaceAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    form = EmailForm
    show_auditlog_history_link = True
    # Short headers and compact cells (name over email, plan under status, MRR with its currency, a tick for
    # the lead): every column fits at 1280 px (tests/test_admin_browser.py).
    list_display = (
        "workspace_id",
        "customer",
        "status_column",
        "mrr_column",
        "review_column",
        "lead_column",
        "account_column",
        "last_event",
    )
    list_filter = ("status", "needs_review", "plan", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("workspace_id", "email", "name", "company")
    list_select_related = ("lead", "account")
    date_hierarchy = "created_at"
    ordering = ("-last_event_at", "workspace_id")
    autocomplete_fields = ("lead", "account", "contact")
    readonly_fields = (*_LIFECYCLE_FIELDS, "owner_since", "owner_why", "created_at", "updated_at", "recent_events")
    fieldsets = (
        (None, {"fields": ("workspace_id", "name", "company", "email", "first_name", "last_name")}),
        ("Lifecycle (derived from events)", {"fields": _LIFECYCLE_FIELDS[1:]}),
        ("CRM links", {"fields": ("lead", "account", "contact")}),
        (
            "Owner rep",
            {
                "fields": ("owner", "owner_since", "owner_why"),
                "description": "Kept once assigned: every alert about this customer goes to this rep, unless the "
                "account has an owner in Salesforce. Choose another rep here to hand the customer over.",
            },
        ),
        ("Recent events", {"fields": ("recent_events",)}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Customer", ordering="name")
    def customer(self, obj: Workspace) -> SafeString:
        """The workspace's name with its owner's email below: one column, not two."""
        return format_html('{}<div class="engine-quiet">{}</div>', obj.name or "-", obj.email or "-")

    @admin.display(description="Status, plan", ordering="status")
    def status_column(self, obj: Workspace) -> SafeString:
        """The status with the plan below it (the plan is also a filter)."""
        return format_html('{}<div class="engine-quiet">{}</div>', obj.get_status_display(), obj.plan or "-")

    @admin.display(description="Account", ordering="account__name")
    def account_column(self, obj: Workspace) -> str:
        """The account's name (its domain is on the workspace's page); `account` is select_related."""
        return obj.account.name if obj.account else "-"

    @admin.display(description="MRR", ordering="mrr")
    def mrr_column(self, obj: Workspace) -> SafeString | str:
        """The amount with its currency, on one line: EUR and USD are mixed in one list."""
        if obj.mrr is None:
            return "-"
        return format_html('<span class="engine-money">{} {}</span>', obj.mrr, obj.currency)

    @admin.display(description="Review", boolean=True, ordering="needs_review")
    def review_column(self, obj: Workspace) -> bool:
        return obj.needs_review

    @admin.display(description="Lead", boolean=True, ordering="lead__email")
    def lead_column(self, obj: Workspace) -> bool:
        """Linked to a lead or not; which one is on the workspace's page."""
        return obj.lead_id is not None

    @admin.display(description="Last event", ordering="last_event_at")
    def last_event(self, obj: Workspace) -> SafeString | str:
        return compact_time(obj.last_event_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Workspaces are made by their first event, never by hand."""
        return False

    def save_model(self, request: HttpRequest, obj: Workspace, form, change: bool) -> None:
        """A hand-over by an admin is kept like any assignment, with who made it."""
        if "owner" in form.changed_data:
            obj.owner_since = timezone.now() if obj.owner_id else None
            obj.owner_why = f"Assigned by {request.user.get_username()} in the admin" if obj.owner_id else ""
        super().save_model(request, obj, form, change)

    @admin.display(description=f"Latest {RECENT_EVENTS_LIMIT} events")
    def recent_events(self, obj: Workspace) -> SafeString | str:
        """The events this workspace is folded from, newest first (Event has no FK to Workspace).

        The model is looked up by name: `workspaces` imports no other app (DESIGN.md).
        """
        event_model = apps.get_model("events", "Event")
        events = event_model.objects.filter(workspace_key=obj.workspace_id).order_by("-received_at", "-id")
        rows = [_event_row(event) for event in events[:RECENT_EVENTS_LIMIT]]
        if not rows:
            return "-"
        body = format_html_join(
            "", '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', rows
        )
        return format_html(
            "<table><tr><th>Event</th><th>Received</th><th>Source</th><th>Type</th><th>Status</th></tr>{}</table>",
            body,
        )


@admin.register(Lead)
class LeadAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    form = EmailForm
    show_auditlog_history_link = True
    list_display = (
        "email",
        "first_name",
        "last_name",
        "company",
        "lead_source",
        "converted_at",
        "converted_account",
    )
    list_filter = ("lead_source", ("converted_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("email", "first_name", "last_name", "company", "=marketo_lead_id", "=salesforce_id")
    list_select_related = ("converted_account",)
    date_hierarchy = "created_at"
    ordering = ("email",)
    autocomplete_fields = ("converted_account", "converted_contact")
    readonly_fields = ("created_at", "updated_at")


@admin.register(Account)
class AccountAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    form = AccountForm
    show_auditlog_history_link = True
    list_display = ("name", "domain", "owner", "csm", "salesforce_id", "created_at")
    list_filter = (
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("csm", admin.RelatedOnlyFieldListFilter),
        ("salesforce_id", admin.EmptyFieldListFilter),
    )
    search_fields = ("name", "domain", "=salesforce_id")
    list_select_related = ("owner", "csm")
    ordering = ("name",)
    autocomplete_fields = ("owner", "csm")
    readonly_fields = ("created_at", "updated_at")


@admin.register(Contact)
class ContactAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    form = EmailForm
    show_auditlog_history_link = True
    list_display = ("email", "first_name", "last_name", "account", "salesforce_id", "created_at")
    list_filter = (("salesforce_id", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("email", "first_name", "last_name", "account__name", "account__domain", "=salesforce_id")
    list_select_related = ("account",)
    ordering = ("email",)
    autocomplete_fields = ("account",)
    readonly_fields = ("created_at", "updated_at")
