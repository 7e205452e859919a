"""Admin of the processing locks (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from workspaces.models import WorkspaceLock


@admin.register(WorkspaceLock)
class WorkspaceLockAdmin(admin.ModelAdmin):
    """The per-workspace processing locks, read-only: when each workspace was last folded."""

    list_display = ("workspace_key", "processed_at")
    search_fields = ("=workspace_key",)
    ordering = ("-processed_at",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WorkspaceLock | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WorkspaceLock | None = None) -> bool:
        return False
