"""Admin for the review queue: see what the engine could not decide, with its evidence, and close it.

Items are raised by the engine and closed through `linking.services.review_items_resolve`, so every
field is read-only here; the only way to change an item is the resolve action, which needs a note.
"""

from __future__ import annotations

from auditlog.mixins import AuditlogHistoryAdminMixin
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from linking.models import ReviewItem
from linking.services import review_items_resolve


class ReviewActionForm(ActionForm):
    """The action bar with a note: what was decided, recorded on every item it resolves."""

    note = forms.CharField(
        required=False,  # only the resolve action needs it; it checks for itself
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "Resolution note", "size": 40}),
    )


@admin.register(ReviewItem)
class ReviewItemAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    action_form = ReviewActionForm
    actions = ("resolve_items",)
    list_display = ("id", "kind", "short_reason", "status", "workspace_link", "created_at", "resolved_by")
    list_display_links = ("id", "short_reason")
    list_filter = ("kind", "status", "created_at")
    search_fields = ("reason", "workspace__workspace_id")
    list_select_related = ("workspace", "resolved_by")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fieldsets = (
        (None, {"fields": ("kind", "status", "reason", "workspace", "lead", "event_links")}),
        ("Resolution", {"fields": ("resolution_note", "resolved_by", "resolved_at")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: ReviewItem | None = None) -> list[str]:
        """Everything: items change only through the resolve action (a service call)."""
        return [f.name for f in ReviewItem._meta.concrete_fields] + ["event_links"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Items are raised by the engine, with evidence; a hand-made one would have none."""
        return False

    @admin.display(description="Reason", ordering="reason")
    def short_reason(self, obj: ReviewItem) -> str:
        return truncatechars(obj.reason, 80)

    @admin.display(description="Workspace", ordering="workspace__workspace_id")
    def workspace_link(self, obj: ReviewItem) -> str:
        """Link to the workspace; `workspace` is select_related, so no query per row."""
        if obj.workspace is None:
            return "-"
        url = reverse("admin:workspaces_workspace_change", args=[obj.workspace.pk])
        return format_html('<a href="{}">{}</a>', url, obj.workspace.workspace_id)

    @admin.display(description="Events")
    def event_links(self, obj: ReviewItem) -> SafeString | str:
        """The evidence: each event involved, linking to its admin page."""
        rows = [
            (reverse("admin:events_event_change", args=[event.pk]), str(event))
            for event in obj.events.order_by("-received_at", "-id")
        ]
        if not rows:
            return "-"
        return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a></li>', rows))

    def _action_note(self, request: HttpRequest) -> str:
        """The note typed in the action bar, validated by the same form that drew it ("" if none)."""
        form = self.action_form(request.POST)
        form.fields["action"].choices = self.get_action_choices(request)
        return form.cleaned_data["note"].strip() if form.is_valid() else ""

    @admin.action(description="Resolve selected review items", permissions=["change"])
    def resolve_items(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        """Close the open ones with the note from the action bar; without a note, change nothing."""
        note = self._action_note(request)
        if not note:
            self.message_user(request, "Write a resolution note to resolve review items.", messages.ERROR)
            return
        item_ids = list(queryset.values_list("pk", flat=True))
        resolved = review_items_resolve(item_ids=item_ids, user=request.user, note=note)
        skipped = len(item_ids) - resolved
        self.message_user(request, f"Resolved {resolved} review item(s); {skipped} already resolved.")
