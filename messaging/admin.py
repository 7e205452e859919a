"""Dispatches in the admin: read-only, with a retry for rows that gave up or were skipped; unsubscribes
read-only (deleting one subscribes the address to marketing email again)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from messaging.delivery import dispatch_retry
from messaging.models import Dispatch, Unsubscribe


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


@admin.register(Unsubscribe)
class UnsubscribeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "address", "how", "dispatch_key")
    list_filter = ("how",)
    search_fields = ("=address",)
    search_help_text = "Exact address (lower case)."
    readonly_fields = [field.name for field in Unsubscribe._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an address unsubscribes itself, from the link in a marketing email

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
