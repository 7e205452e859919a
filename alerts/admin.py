"""Admin for alerts: what fired, for whom, why (the reason and the evidence), and every delivery attempt.

Rules, reps and territories are configured here; dead deliveries wait here for a retry.
"""

from __future__ import annotations

import json

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from alerts.delivery import deliveries_retry
from alerts.models import Alert, AlertRule, Delivery, ExchangeRate, Rep, TerritoryRule
from alerts.services import alert_acknowledge, alert_resolve


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("channel", "recipient", "mode", "status", "attempts", "next_attempt_at", "sent_at", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    list_display = ("created_at", "rule", "title", "audience", "recipient", "routed_by", "workspace_key", "status")
    list_filter = ("rule", "status", "audience", "routed_by", ("recipient", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("recipient",)
    search_fields = ("=workspace_key", "title", "reason", "dedupe_key")
    date_hierarchy = "created_at"
    actions = ("acknowledge_alerts", "resolve_alerts")
    inlines = (DeliveryInline,)
    readonly_fields = (
        "rule",
        "dedupe_key",
        "audience",
        "workspace_key",
        "workspace",
        "title",
        "reason",
        "evidence",
        "firing",
        "recipient",
        "routed_by",
        "routing",
        "acknowledged_at",
        "acknowledged_by",
        "snoozed_until",
        "resolved_at",
        "resolved_by",
        "created_at",
        "updated_at",
    )
    fields = ("status", *readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Alerts are raised by rules, with their evidence; not by hand."""
        return False

    @admin.display(description="Why it fired")
    def evidence(self, obj: Alert) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.context, indent=2, sort_keys=True))

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge_alerts(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        for alert in queryset:
            alert_acknowledge(alert=alert, user=request.user)
        self.message_user(request, f"Acknowledged {queryset.count()} alert(s).", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts")
    def resolve_alerts(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        for alert in queryset:
            alert_resolve(alert=alert, user=request.user)
        self.message_user(request, f"Resolved {queryset.count()} alert(s).", messages.SUCCESS)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "alert", "channel", "recipient", "mode", "status", "attempts", "next_attempt_at")
    list_filter = ("status", "channel", "mode")
    list_select_related = ("alert",)
    search_fields = ("recipient", "alert__title", "=alert__workspace_key", "last_error")
    date_hierarchy = "created_at"
    actions = ("retry_deliveries",)
    readonly_fields = (
        "alert",
        "channel",
        "recipient",
        "user",
        "mode",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry selected failed, dead or skipped deliveries (fresh attempts, now)")
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries_retry(delivery_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {count} delivery(ies) to be sent again.", messages.SUCCESS)


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("key", "enabled", "audience", "send_email", "send_slack", "days_before", "updated_at")
    list_editable = ("enabled", "send_email", "send_slack")
    list_filter = ("enabled", "audience")


class TerritoryInline(admin.TabularInline):
    model = TerritoryRule
    extra = 0
    fields = ("name", "domains", "country", "priority", "active")


@admin.register(Rep)
class RepAdmin(admin.ModelAdmin):
    """The same settings a rep edits on /reps/settings/, validated the same way (Rep.clean)."""

    list_display = ("__str__", "user", "address", "delivery", "email_on", "slack_on", "time_zone", "away", "active")
    list_filter = ("active", "delivery", "email_on", "slack_on")
    list_select_related = ("user", "backup__user")
    search_fields = ("user__username", "user__email", "email", "user__first_name", "user__last_name")
    autocomplete_fields = ("user", "backup")
    inlines = (TerritoryInline,)
    fieldsets = (
        (None, {"fields": ("user", "active")}),
        ("Channels", {"fields": ("email_on", "slack_on", "email", "slack_member_id")}),
        ("Email delivery", {"fields": ("delivery", "digest_hour")}),
        ("Time zone and quiet hours", {"fields": ("time_zone", ("quiet_start", "quiet_end"))}),
        ("Time away", {"fields": (("away_from", "away_until"), "backup")}),
    )

    @admin.display(description="Away")
    def away(self, obj: Rep) -> str:
        if obj.away_from is None:
            return "—"
        return f"{obj.away_from:%Y-%m-%d} to {obj.away_until:%Y-%m-%d}, backup {obj.backup or 'none'}"


@admin.register(TerritoryRule)
class TerritoryRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "rep", "domains", "country", "priority", "active")
    list_editable = ("priority", "active")
    list_filter = ("active", "country", ("rep", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("rep__user",)
    search_fields = ("name", "domains", "country", "rep__user__username")
    autocomplete_fields = ("rep",)


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Rates the rep pages total money by (REPORTING_CURRENCY); kept by hand, shown with their date."""

    list_display = ("currency", "reporting_currency", "rate", "as_of", "updated_at")
    list_filter = ("reporting_currency",)
    search_fields = ("currency",)
