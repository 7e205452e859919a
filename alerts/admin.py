"""Admin for alerts: what fired, for whom, and why (the reason and the evidence)."""

from __future__ import annotations

import json

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from alerts.models import Alert


@admin.register(Alert)
class AlertAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    list_display = ("created_at", "rule", "title", "audience", "workspace_key", "status")
    list_filter = ("rule", "status", "audience", "created_at")
    search_fields = ("=workspace_key", "title", "reason")
    date_hierarchy = "created_at"
    readonly_fields = (
        "rule",
        "dedupe_key",
        "audience",
        "workspace_key",
        "title",
        "reason",
        "evidence",
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
