"""Admin for the Salesforce outbox: filter by state, object and errorCode; retry or dead-letter."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from salesforce.models import OutboxItem, SyncControl
from salesforce.pilot import pilot_status
from salesforce.worker import outbox_dead_letter, outbox_retry


class ErrorCodeFilter(admin.SimpleListFilter):
    title = "Salesforce errorCode"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = OutboxItem.objects.exclude(error_code="").values_list("error_code", flat=True).distinct()
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        return queryset.filter(error_code=self.value()) if self.value() else queryset


@admin.register(OutboxItem)
class OutboxItemAdmin(admin.ModelAdmin):
    list_display = (
        "object_type",
        "external_id",
        "state",
        "salesforce_id",
        "error_code",
        "attempts",
        "next_attempt_at",
        "updated_at",
    )
    list_filter = ("state", "object_type", ErrorCodeFilter)
    search_fields = ("=external_id", "=salesforce_id", "=workspace_key")
    ordering = ("-updated_at",)
    show_full_result_count = False
    actions = ("retry_items", "dead_letter_items")
    readonly_fields = [f.name for f in OutboxItem._meta.concrete_fields if f.name != "id"] + ["pretty_payload"]
    exclude = ("payload",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        """The sync health summary above the list, and the pilot in force (who, what share, what is held)."""
        control = SyncControl.objects.filter(pk=1).first()
        counts = dict(OutboxItem.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
        pilot = pilot_status()
        extra_context = {**(extra_context or {}), "sync_health": {"control": control, "counts": counts}, "pilot": pilot}
        if control and control.pause_reason and control.paused_until:
            self.message_user(
                request,
                f"Sync paused until {control.paused_until:%Y-%m-%d %H:%M} UTC: {control.pause_reason}",
                messages.WARNING,
            )
        summary = ", ".join(f"{state}: {n}" for state, n in sorted(counts.items())) or "empty"
        usage = f"; API {control.api_used}/{control.api_max}" if control and control.api_max else ""
        last = (
            f"; last success {control.last_success_at:%Y-%m-%d %H:%M:%S} UTC"
            if control and control.last_success_at
            else ""
        )
        self.message_user(request, f"Outbox — {summary}{usage}{last}", messages.INFO)
        if not pilot.pilot.everyone or pilot.held_rows:
            self.message_user(request, pilot.summary, messages.INFO)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Payload (what is or would be sent)")
    def pretty_payload(self, obj: OutboxItem) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Retry selected (send again now)")
    def retry_items(self, request: HttpRequest, queryset: QuerySet[OutboxItem]) -> None:
        count = outbox_retry(item_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {count} item(s) to be sent again.", messages.SUCCESS)

    @admin.action(description="Dead-letter selected (stop trying)")
    def dead_letter_items(self, request: HttpRequest, queryset: QuerySet[OutboxItem]) -> None:
        count = outbox_dead_letter(item_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Dead-lettered {count} item(s).", messages.SUCCESS)


@admin.register(SyncControl)
class SyncControlAdmin(admin.ModelAdmin):
    list_display = ("__str__", "paused_until", "pause_reason", "api_used", "api_max", "last_success_at")
    readonly_fields = ("api_used", "api_max", "api_checked_at", "last_success_at")
    fields = ("paused_until", "pause_reason", "api_used", "api_max", "api_checked_at", "last_success_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
