"""Admin for the review queue: see what the engine could not decide, with its evidence, and act on it.

Items are raised by the engine and changed only through services, so every field is read-only here.
The actions: resolve (with a note), reprocess (re-fold the items' workspaces), and link a workspace
to a lead and/or account the admin chooses (an intermediate page, for one item at a time).
"""

from __future__ import annotations

from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME, ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from events.services import review_items_reprocess
from linking.services import review_item_link, review_items_resolve
from workspaces.admin_display import compact_time
from workspaces.models import Account, Lead, ReviewItem

LINK_TEMPLATE = "admin/linking/reviewitem/link_action.html"


class ReviewActionForm(ActionForm):
    """The action bar with a note: what was decided, recorded on every item it resolves."""

    note = forms.CharField(
        required=False,  # only the resolve action needs it; it checks for itself
        max_length=2000,
        # Narrow enough that the action, the note, Go and the "0 of 6 selected" counter share one line.
        widget=forms.TextInput(attrs={"placeholder": "Resolution note", "size": 24}),
    )


class LinkForm(forms.Form):
    """Which lead and/or account a workspace belongs to, typed rather than picked from a huge select.

    Used with the prefix "link", so its `note` never collides with the action bar's `note`.
    """

    lead = forms.CharField(
        label="Lead email",
        required=False,
        max_length=254,
        help_text="The email of an existing lead, e.g. dana@acme.io.",
    )
    account = forms.CharField(
        label="Account domain or id",
        required=False,
        max_length=253,
        help_text="The domain of an existing account, e.g. acme.io, or its id for an account without a domain.",
    )
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why this link; recorded on the review item. Left empty, it names what was linked.",
    )

    def clean_lead(self) -> Lead | None:
        email = self.cleaned_data["lead"].strip().lower()
        if not email:
            return None
        lead = Lead.objects.filter(email=email).first()
        if lead is None:
            raise forms.ValidationError("No lead has the email %(email)s.", code="unknown", params={"email": email})
        return lead

    def clean_account(self) -> Account | None:
        value = self.cleaned_data["account"].strip().lower().removeprefix("@")
        if not value:
            return None
        lookup = {"pk": int(value)} if value.isdigit() else {"domain": value}
        account = Account.objects.filter(**lookup).first()
        if account is None:
            raise forms.ValidationError(
                "No account has the domain or id %(value)s.", code="unknown", params={"value": value}
            )
        return account

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors and cleaned.get("lead") is None and cleaned.get("account") is None:
            raise forms.ValidationError("Enter a lead email, an account domain, or both.", code="empty")
        return cleaned


def _admin_link(obj: object | None, model: str) -> SafeString | str:
    """A link to the object's admin change page, or "-" when there is none."""
    if obj is None:
        return "-"
    return format_html('<a href="{}">{}</a>', reverse(f"admin:{model}_change", args=[obj.pk]), obj)  # type: ignore[attr-defined]


@admin.register(ReviewItem)
class ReviewItemAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    action_form = ReviewActionForm
    actions = ("resolve_items", "reprocess_items", "link_item")
    list_display = ("id", "kind", "short_reason", "status", "workspace_link", "created", "resolved_by")
    list_display_links = ("id", "short_reason")
    list_filter = ("kind", "status", "created_at")
    search_fields = ("reason", "workspace__workspace_id")
    list_select_related = ("workspace", "resolved_by")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fieldsets = (
        (None, {"fields": ("kind", "status", "reason", "workspace", "lead", "event_links")}),
        (
            "Workspace links now",
            {"fields": ("workspace_link", "workspace_lead", "workspace_account", "workspace_linked_by_admin")},
        ),
        ("Resolution", {"fields": ("resolution_note", "resolved_by", "resolved_at")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )
    _DISPLAY_FIELDS = (
        "event_links",
        "workspace_link",
        "workspace_lead",
        "workspace_account",
        "workspace_linked_by_admin",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: ReviewItem | None = None) -> list[str]:
        """Everything: items change only through the actions (service calls)."""
        return [f.name for f in ReviewItem._meta.concrete_fields] + list(self._DISPLAY_FIELDS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Items are raised by the engine, with evidence; a hand-made one would have none."""
        return False

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: ReviewItem) -> SafeString | str:
        return compact_time(obj.created_at)

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

    @admin.display(description="Its lead")
    def workspace_lead(self, obj: ReviewItem) -> SafeString | str:
        return _admin_link(obj.workspace.lead if obj.workspace else None, "workspaces_lead")

    @admin.display(description="Its account")
    def workspace_account(self, obj: ReviewItem) -> SafeString | str:
        return _admin_link(obj.workspace.account if obj.workspace else None, "workspaces_account")

    @admin.display(description="Linked by an admin", boolean=True)
    def workspace_linked_by_admin(self, obj: ReviewItem) -> bool | None:
        return obj.workspace.linked_by_admin if obj.workspace else None

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

    @admin.action(description="Reprocess selected items", permissions=["change"])
    def reprocess_items(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        """Retry the items' events and re-fold their workspaces; a question that no longer holds closes itself."""
        queued = review_items_reprocess(item_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {queued} workspace(s) for reprocessing.")

    @admin.action(description="Link to a chosen lead/account…", permissions=["change"])
    def link_item(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> TemplateResponse | None:
        """Ask for the lead/account (first call), then link them through the service (the form's post)."""
        items = list(queryset.select_related("workspace__lead", "workspace__account")[:2])
        if len(items) != 1:
            self.message_user(request, "Select exactly one review item to link.", messages.ERROR)
            return None
        item = items[0]
        if item.workspace is None:
            self.message_user(
                request, "This review item is not about a workspace: there is nothing to link.", messages.ERROR
            )
            return None
        form = LinkForm(request.POST if "apply" in request.POST else None, prefix="link")
        if not form.is_valid():
            return self._link_page(request, item, form)
        lead, account = form.cleaned_data["lead"], form.cleaned_data["account"]
        try:
            workspace = review_item_link(
                item_id=item.pk, user=request.user, lead=lead, account=account, note=form.cleaned_data["note"].strip()
            )
        except ValueError as exc:  # the service's own refusal, said in its words
            self.message_user(request, str(exc), messages.ERROR)
            return None
        chosen = " and ".join(f"{label} {value}" for label, value in (("lead", lead), ("account", account)) if value)
        self.message_user(request, f"Linked workspace {workspace.workspace_id} to {chosen}.", messages.SUCCESS)
        return None

    def _link_page(self, request: HttpRequest, item: ReviewItem, form: LinkForm) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Link workspace {item.workspace.workspace_id}",
            "opts": self.opts,
            "item": item,
            "workspace": item.workspace,
            "form": form,
            "action_name": "link_item",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "item_url": reverse("admin:workspaces_reviewitem_change", args=[item.pk]),
            "workspace_url": reverse("admin:workspaces_workspace_change", args=[item.workspace.pk]),
            "lead_link": _admin_link(item.workspace.lead, "workspaces_lead"),
            "account_link": _admin_link(item.workspace.account, "workspaces_account"),
            "changelist_url": reverse("admin:workspaces_reviewitem_changelist"),
        }
        return TemplateResponse(request, LINK_TEMPLATE, context)
