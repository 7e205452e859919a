"""Read-only admin for the usage rollup: the rows are derived from events, never edited by hand."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from usage.models import UsageDaily


@admin.register(UsageDaily)
class UsageDailyAdmin(admin.ModelAdmin):
    list_display = (
        "day",
        "workspace_key",
        "feature",
        "product",
        "events",
        "count",
        "duration_seconds",
        "errors",
        "first_seen_at",
        "last_seen_at",
    )
    list_filter = ("feature", "product", "day")
    # Exact match: admins paste ids, and the (workspace_key, day) index serves it.
    search_fields = ("=workspace_key",)
    search_help_text = "Exact workspace id."
    date_hierarchy = "day"
    ordering = ("-day", "workspace_key", "feature", "product")
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False
