"""Dispatches in the admin: read-only, with a retry for rows that gave up or were skipped."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from messaging.delivery import dispatch_retry
from messaging.models import Dispatch


@admin.register(Dispatch)
class DispatchAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "recipient", "template", "status", "attempts", "next_attempt_at", "key")
    list_filter = ("status", "channel", "source")
    search_fields = ("=key", "=recipient")
    search_help_text = "Exact key or recipient."
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = [field.name for field in Dispatch._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Retry the selected dead or skipped dispatches", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Dispatch]) -> None:
        retried = 0
        for dispatch in queryset.filter(status__in=[Dispatch.Status.DEAD, Dispatch.Status.SKIPPED]):
            dispatch_retry(dispatch=dispatch)
            retried += 1
        self.message_user(request, f"{retried} dispatch(es) due again; the sender sends them within a minute.",
                          messages.SUCCESS)  # fmt: skip
