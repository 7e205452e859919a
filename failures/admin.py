"""Admin for error kinds (read-only, resolvable) and heartbeats (read-only). The overview is /ops/."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from failures.models import ErrorKind, Heartbeat
from failures.services import admin_change_url, error_kinds_resolve


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by the engine only: nobody adds, edits or deletes these by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ErrorKind)
class ErrorKindAdmin(ReadOnlyAdmin):
    list_display = ("kind", "source", "short_message", "count", "first_seen", "last_seen", "resolved_at", "latest")
    list_filter = ("source", ("resolved_at", admin.EmptyFieldListFilter), "last_seen")
    search_fields = ("kind", "message")
    ordering = ("-last_seen",)
    actions = ("resolve",)
    fields = (
        "source",
        "kind",
        "message",
        "count",
        "first_seen",
        "last_seen",
        "resolved_at",
        "last_example",
        "last_workspace_key",
        "latest",
        "window_start",
        "window_count",
        "fingerprint",
    )
    readonly_fields = fields

    @admin.display(description="message")
    def short_message(self, obj: ErrorKind) -> str:
        return obj.message[:120]

    @admin.display(description="latest object")
    def latest(self, obj: ErrorKind) -> str:
        url = admin_change_url(obj.last_object_type, obj.last_object_id)
        if not url:
            return obj.last_object_id or "—"
        return format_html('<a href="{}">{} {}</a>', url, obj.last_object_type.name, obj.last_object_id)

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("failures.change_errorkind")

    @admin.action(description="Mark resolved (a new occurrence alerts again)", permissions=["resolve"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[ErrorKind]) -> None:
        count = error_kinds_resolve(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Marked {count} error kind(s) resolved.", messages.SUCCESS)


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("name", "beat_at", "details")
    fields = ("name", "beat_at", "details")
    readonly_fields = fields
