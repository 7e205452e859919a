"""Admin for the event cache: read what arrived, annotate it, put it back in the queue.

Events are the source of truth the workspace state is folded from, so the admin never edits them:
only `notes` is writable, and retrying goes through `events.services.events_retry`.
"""

from __future__ import annotations

import json

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from events.models import Event, WebhookBatch
from events.services import events_retry
from workspaces.admin_display import compact_time
from workspaces.models import Workspace

# Editable on the change page; everything else is the record as received and processed.
_EDITABLE_FIELDS = ("notes",)


@admin.register(Event)
class EventAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    # Times compact (date over time when tight), the type breakable at its dots with its source below, no id
    # column (the external id opens the event): every column fits at 1280 px (tests/test_admin_browser.py).
    list_display = (
        "received",
        "occurred",
        "type_column",
        "status",
        "workspace_column",
        "external",
        "retries",
    )
    list_display_links = ("external",)
    list_filter = ("source", "status", "type", "received_at")
    # Exact matches: admins paste ids, and a substring scan of a large table is slow.
    search_fields = ("=external_id", "=workspace_key")
    search_help_text = "Exact external id or workspace id."
    ordering = ("-received_at", "-id")
    # Counting every row of a large table on each page view is the slow part of the changelist.
    show_full_result_count = False
    list_per_page = 50
    actions = ("retry_events",)
    fieldsets = (
        (None, {"fields": ("source", "external_id", "type", "status", "workspace_key", "workspace_link")}),
        ("Timing", {"fields": ("occurred_at", "received_at", "completed_at")}),
        ("Retries", {"fields": ("retry_count", "next_attempt_at", "lease_owner", "lease_expires_at")}),
        ("Payload", {"fields": ("payload_pretty",)}),
        ("Notes", {"fields": ("notes",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        """With the workspace's admin id beside its key, so the list links each one without a query per row."""
        workspace = Workspace.objects.filter(workspace_id=OuterRef("workspace_key")).values("pk")[:1]
        return super().get_queryset(request).annotate(workspace_pk=Subquery(workspace))

    @admin.display(description="Received", ordering="received_at")
    def received(self, obj: Event) -> SafeString | str:
        return compact_time(obj.received_at)

    @admin.display(description="Occurred", ordering="occurred_at")
    def occurred(self, obj: Event) -> SafeString | str:
        return compact_time(obj.occurred_at)

    @admin.display(description="Type", ordering="type")
    def type_column(self, obj: Event) -> SafeString:
        """The type, which may break after a dot rather than push the columns out, and its source below."""
        kind = (
            format_html_join(mark_safe(".<wbr>"), "{}", ((part,) for part in obj.type.split("."))) if obj.type else "-"
        )
        return format_html('{}<div class="engine-quiet">{}</div>', kind, obj.get_source_display())

    @admin.display(description="Workspace", ordering="workspace_key")
    def workspace_column(self, obj: Event) -> SafeString | str:
        """The key, linked to the workspace's admin page when the workspace exists."""
        if not obj.workspace_key:
            return "-"
        pk = getattr(obj, "workspace_pk", None)
        if pk is None:
            return obj.workspace_key
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:workspaces_workspace_change", args=[pk]), obj.workspace_key
        )

    @admin.display(description="External id", ordering="external_id")
    def external(self, obj: Event) -> SafeString:
        """The provider's id, which may break after its prefix (msg_, evt_) when the list is tight."""
        prefix, underscore, rest = obj.external_id.partition("_")
        if not underscore:
            return format_html("{}", obj.external_id)
        return format_html("{}_<wbr>{}", prefix, rest)

    @admin.display(description="Retries", ordering="retry_count")
    def retries(self, obj: Event) -> SafeString | str:
        """How many times it failed, and when it is tried next (while it waits for that)."""
        if obj.next_attempt_at is None:
            return str(obj.retry_count)
        return format_html(
            '{}<div class="engine-quiet">next {}</div>', obj.retry_count, compact_time(obj.next_attempt_at)
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Event | None = None) -> list[str]:
        """Every model field except `notes`, plus the computed displays (payload, workspace link)."""
        fields = [f.name for f in Event._meta.concrete_fields if f.name not in _EDITABLE_FIELDS]
        return [*fields, "payload_pretty", "workspace_link"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Events only come in through the signed webhooks."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        """Workspace state is folded from the events; deleting one would silently change history."""
        return False

    @admin.display(description="Payload")
    def payload_pretty(self, obj: Event) -> str:
        """The body as received, indented and escaped so any provider text is shown, never run."""
        if isinstance(obj.payload, str):  # stored as text when the body was not JSON
            text = obj.payload
        else:
            text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        # A class, not a style attribute: the Content-Security-Policy refuses inline styles.
        return format_html('<pre class="engine-payload">{}</pre>', text)

    @admin.display(description="Workspace")
    def workspace_link(self, obj: Event) -> str:
        """Link to the workspace, if one exists; one query, so only on the change page."""
        if not obj.workspace_key:
            return "-"
        pk = Workspace.objects.filter(workspace_id=obj.workspace_key).values_list("pk", flat=True).first()
        if pk is None:
            return "-"
        url = reverse("admin:workspaces_workspace_change", args=[pk])
        return format_html('<a href="{}">{}</a>', url, obj.workspace_key)

    @admin.action(description="Retry selected events", permissions=["change"])
    def retry_events(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        """Re-queue through the service; ignored, rejected and completed events are left alone."""
        event_ids = list(queryset.values_list("pk", flat=True))
        requeued = events_retry(event_ids=event_ids)
        skipped = len(event_ids) - requeued
        self.message_user(
            request,
            f"Re-queued {requeued} event(s); skipped {skipped} (ignored, rejected or completed).",
            messages.SUCCESS if requeued else messages.WARNING,
        )


@admin.register(WebhookBatch)
class WebhookBatchAdmin(admin.ModelAdmin):
    """Batches received (CONTRACT §2b), read-only: their ids make a re-sent batch a duplicate; the counts are
    what each was answered."""

    list_display = ("webhook_id", "received_at", "events", "accepted", "duplicates", "ignored", "rejected")
    search_fields = ("=webhook_id",)
    ordering = ("-received_at",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookBatch | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookBatch | None = None) -> bool:
        return False
