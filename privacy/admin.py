"""Admin for data requests and tombstones, and the append-only audit log.

A data request is added with the person's email and carried out with the action "Carry out selected
requests"; an export downloads as JSON. Done requests keep who, when and the counts, never the address.
"""

from __future__ import annotations

import json

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from privacy.erasure import ErasureInvalid
from privacy.models import DataRequest, Tombstone
from privacy.services import data_request_carry_out, data_request_create


@admin.register(DataRequest)
class DataRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "hash_prefix", "requested_by_name", "created_at", "completed_at")
    list_filter = ("kind", "status")
    search_fields = ("=email_hash",)
    search_help_text = "Exact email hash (python manage.py privacy hash EMAIL)."
    actions = ("carry_out",)
    fields = ("kind", "email", "note")
    readonly_fields_done = (
        "kind",
        "status",
        "email_hash",
        "note",
        "requested_by_name",
        "created_at",
        "completed_at",
        "summary",
        "error",
    )

    @admin.display(description="Email hash")
    def hash_prefix(self, obj: DataRequest) -> str:
        return f"{obj.email_hash[:12]}…"

    def get_fields(self, request: HttpRequest, obj: DataRequest | None = None):
        return self.fields if obj is None else self.readonly_fields_done

    def get_readonly_fields(self, request: HttpRequest, obj: DataRequest | None = None):
        return () if obj is None else self.readonly_fields_done

    def has_delete_permission(self, request: HttpRequest, obj: DataRequest | None = None) -> bool:
        """The record of who asked for what stays."""
        return False

    def save_model(self, request: HttpRequest, obj: DataRequest, form, change: bool) -> None:
        if change:
            return
        created = data_request_create(kind=obj.kind, email=obj.email, note=obj.note, requested_by=request.user)
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.action(description="Carry out selected requests", permissions=["change"])
    def carry_out(self, request: HttpRequest, queryset: QuerySet[DataRequest]) -> HttpResponse | None:
        pending = list(queryset.exclude(status=DataRequest.Status.DONE))
        exports = [r for r in pending if r.kind == DataRequest.Kind.EXPORT]
        if len(exports) > 1:
            self.message_user(request, "Carry out one export at a time: each downloads a file.", messages.ERROR)
            return None
        download = None
        for data_request in pending:
            try:
                document = data_request_carry_out(data_request=data_request)
            except ErasureInvalid as exc:
                self.message_user(request, f"{data_request}: {exc}", messages.ERROR)
                continue
            if document is not None:
                download = _download(document, f"data-export-{data_request.pk}.json")
            else:
                self.message_user(request, f"{data_request} done: {data_request.summary}", messages.SUCCESS)
        skipped = queryset.count() - len(pending)
        if skipped:
            self.message_user(request, f"Skipped {skipped} request(s) already carried out.", messages.WARNING)
        return download


def _download(document: dict, filename: str) -> HttpResponse:
    response = HttpResponse(
        json.dumps(document, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(Tombstone)
class TombstoneAdmin(admin.ModelAdmin):
    """Read-only. A superuser may delete one to let a person back in (their later events then apply)."""

    list_display = ("id", "email_hash", "created_at")
    search_fields = ("=email_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Tombstone | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Tombstone | None = None) -> bool:
        return request.user.is_superuser


admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class AppendOnlyLogEntryAdmin(LogEntryAdmin):
    """auditlog's own admin, with deletion refused to everyone, superusers included."""

    def has_delete_permission(self, request: HttpRequest, obj: LogEntry | None = None) -> bool:
        return False
