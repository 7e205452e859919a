"""Cohorts and stages in the admin: conditions validated on save (each problem named by its path), a
version bump when a condition changes, a preview (how many match now, a sample, one workspace explained)
and the member counts of the last 30 days. Profiles, memberships and stage periods are read-only: they
are derived."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from usage.charts import members_figure
from usage.conditions import condition_errors
from usage.definitions import definition_save
from usage.models import Cohort, CohortMembership, PlanLimitDaily, Profile, Stage, StagePeriod, SupportTicket
from usage.selectors import condition_preview, members_over_time


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


class DefinitionForm(forms.ModelForm):
    """The condition is edited as JSON text and checked against the metrics and fields that exist."""

    condition = forms.JSONField(widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "class": "vLargeTextField"}))
    stage_conditions = False

    def clean_condition(self) -> Any:
        condition = self.cleaned_data["condition"]
        errors = condition_errors(
            condition,
            cohorts=self.stage_conditions,
            known_cohorts=frozenset(Cohort.objects.values_list("key", flat=True)),
        )
        if errors:
            raise forms.ValidationError([f"{path}: {' '.join(messages)}" for path, messages in errors.items()])
        return condition


class CohortForm(DefinitionForm):
    class Meta:
        model = Cohort
        fields = ("key", "name", "description", "enabled", "condition")


class StageForm(DefinitionForm):
    stage_conditions = True

    class Meta:
        model = Stage
        fields = ("key", "name", "description", "order", "enabled", "condition")


class DefinitionAdmin(admin.ModelAdmin):
    readonly_fields = ("version", "preview_link", "created_at", "updated_at")
    search_fields = ("key", "name")
    list_filter = ("enabled",)
    period_model: type[CohortMembership] | type[StagePeriod]
    period_field: str

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        condition = form.cleaned_data["condition"]
        if change:  # the form set the new condition already: compare with what is stored
            obj.condition = type(obj).objects.get(pk=obj.pk).condition
        definition_save(obj, condition=condition)
        super().save_model(request, obj, form, change)

    @admin.display(description="Members now")
    def members(self, obj) -> int:
        return self.period_model.objects.filter(**{self.period_field: obj}, exited_at__isnull=True).count()

    @admin.display(description="Preview")
    def preview_link(self, obj) -> str:
        if obj.pk is None:
            return "Save first, then preview."
        url = reverse(f"admin:usage_{obj._meta.model_name}_preview", args=[obj.pk])
        return format_html('<a href="{}">How many workspaces match now, which, and why</a>', url)

    def get_urls(self):
        name = self.model._meta.model_name
        return [
            path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view), name=f"usage_{name}_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The stored condition, or an edited copy posted from the page, against every profile now."""
        definition = get_object_or_404(self.model, pk=pk)
        if not self.has_view_permission(request, definition):
            raise PermissionDenied
        condition, errors = definition.condition, {}
        text = request.POST.get("condition") if request.method == "POST" else None
        if text is not None:
            try:
                condition = json.loads(text)
                errors = condition_errors(condition, cohorts=self.model is Stage)
            except json.JSONDecodeError as exc:
                errors = {"condition": [f"Not valid JSON: {exc}."]}
        workspace_key = (request.POST.get("workspace") or request.GET.get("workspace") or "").strip()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "definition": definition,
            "title": f"Preview: {definition.name}",
            "condition_text": text if text is not None else _pretty(condition),
            "errors": errors,
            "preview": None if errors else condition_preview(condition, workspace_key=workspace_key),
            "explained_text": "",
            "workspace": workspace_key,
            "history": members_over_time(self.period_model, **{self.period_field: definition}),
        }
        context["members_figure"] = members_figure(context["history"], name=definition.name)
        if context["preview"] is not None and context["preview"].explained is not None:
            context["explained_text"] = _pretty(context["preview"].explained)
        return TemplateResponse(request, "admin/usage/preview.html", context)


@admin.register(Cohort)
class CohortAdmin(DefinitionAdmin):
    form = CohortForm
    list_display = ("key", "name", "enabled", "version", "members", "updated_at")
    period_model, period_field = CohortMembership, "cohort"


@admin.register(Stage)
class StageAdmin(DefinitionAdmin):
    form = StageForm
    list_display = ("order", "key", "name", "enabled", "version", "members", "updated_at")
    ordering = ("order",)
    period_model, period_field = StagePeriod, "stage"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived rows: looked at, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdmin):
    list_display = ("workspace_key", "stage", "stage_since", "day", "evaluated_at", "next_due_at")
    list_filter = ("stage",)
    search_fields = ("=workspace_key",)
    list_select_related = ("stage",)


@admin.register(CohortMembership)
class CohortMembershipAdmin(ReadOnlyAdmin):
    list_display = ("workspace_key", "cohort", "entered_at", "entered_version", "exited_at")
    list_filter = ("cohort", ("exited_at", admin.EmptyFieldListFilter))
    search_fields = ("=workspace_key",)
    list_select_related = ("cohort",)


@admin.register(StagePeriod)
class StagePeriodAdmin(ReadOnlyAdmin):
    list_display = ("workspace_key", "stage", "previous", "entered_at", "exited_at")
    list_filter = ("stage", ("exited_at", admin.EmptyFieldListFilter))
    search_fields = ("=workspace_key",)
    list_select_related = ("stage", "previous")


@admin.register(SupportTicket)
class SupportTicketAdmin(ReadOnlyAdmin):
    list_display = ("workspace_key", "ticket_id", "priority", "opened_at", "resolved_at", "satisfaction")
    list_filter = ("priority", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("=workspace_key", "=ticket_id")


@admin.register(PlanLimitDaily)
class PlanLimitDailyAdmin(ReadOnlyAdmin):
    list_display = ("day", "workspace_key", "limit", "hits", "last_hit_at")
    list_filter = ("limit",)
    search_fields = ("=workspace_key",)
