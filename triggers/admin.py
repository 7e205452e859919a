"""Admin for the trigger engine: triggers edited as data (validated by triggers/spec.py, versioned by
`trigger_save`), firings and timers read-only with their explanation. Also the read-only usage rollup
(its rows are derived from events, never edited by hand), registered here since it moved to usage.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from triggers.experiments import arm_shares, experiment_save, experiment_start, experiment_stop
from triggers.models import Experiment, Firing, Timer, Trigger
from triggers.preview import DEFAULT_LOOKBACK, MAX_LOOKBACK, trigger_preview
from triggers.selectors import experiment_arm_counts
from triggers.services import trigger_save
from usage.models import UsageDaily


@admin.register(UsageDaily)
class UsageDailyAdmin(admin.ModelAdmin):
    list_display = (
        "day",
        "workspace_key",
        "feature",
        "product",
        "events",
        "count",
        "duration_seconds",
        "errors",
        "first_seen_at",
        "last_seen_at",
    )
    list_filter = ("feature", "product", "day")
    # Exact match: admins paste ids, and the (workspace_key, day) index serves it.
    search_fields = ("=workspace_key",)
    search_help_text = "Exact workspace id."
    date_hierarchy = "day"
    ordering = ("-day", "workspace_key", "feature", "product")
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the engine writes: an admin reads them, never adds, edits or deletes one."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def pretty_json(value: Any) -> str:
    """A JSON value indented in a <pre>, escaped."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    """Edit a trigger: saving validates it (each error on its field, with its path) and raises its version
    when what it does changed."""

    list_display = ("key", "name", "enabled", "priority", "when_kind", "audience", "version", "updated_at")
    list_filter = ("enabled", "audience", "transactional")
    search_fields = ("key", "name")
    readonly_fields = ("version", "dry_run_link", "created_at", "updated_at")
    change_form_template = "admin/triggers/trigger/change_form.html"
    fieldsets = (
        (None, {"fields": ("key", "name", "description", "enabled", "priority", "version", "dry_run_link")}),
        ("When, who, what", {"fields": ("when", "audience", "team", "actions", "follow_up")}),
        ("How often", {"fields": ("cap_seconds", "reentry", "transactional")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="When")
    def when_kind(self, obj: Trigger) -> str:
        return str((obj.when or {}).get("kind", ""))

    def save_model(self, request: HttpRequest, obj: Trigger, form: Any, change: bool) -> None:
        trigger_save(trigger=obj)

    def has_delete_permission(self, request: HttpRequest, obj: Trigger | None = None) -> bool:
        return False  # a trigger that fired is the record of its firings: disable it instead

    @admin.display(description="Dry run")
    def dry_run_link(self, obj: Trigger) -> str:
        if obj.pk is None:
            return "Use “Dry run” below to see what these settings would fire now, before saving."
        url = reverse("admin:triggers_trigger_dry_run", args=[obj.pk])
        return format_html('<a href="{}">Would it fire for any workspace now? (the saved trigger)</a>', url)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.dry_run_view)
        return [
            path("dry-run/", view, name="triggers_trigger_dry_run_new"),
            path("<int:pk>/dry-run/", view, name="triggers_trigger_dry_run"),
            *super().get_urls(),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        """The change form posts its (unsaved) fields to the dry run with the “Dry run” button."""
        url = reverse("admin:triggers_trigger_dry_run", args=[object_id]) if object_id else None
        extra = {"dry_run_url": url or reverse("admin:triggers_trigger_dry_run_new"), **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, extra)

    def dry_run_view(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        """Which workspaces the trigger would fire for now, and why, saving nothing: the stored trigger (GET),
        the change form's edited fields (POST from its “Dry run” button) or an edited document (POST here)."""
        stored = get_object_or_404(Trigger, pk=pk) if pk is not None else None
        if not self.has_view_permission(request, stored):
            raise PermissionDenied
        trigger, errors = self._dry_run_trigger(request, stored)
        hours = _hours(request.POST.get("hours") or request.GET.get("hours"))
        preview = None
        if trigger is not None and not errors:
            try:
                preview = trigger_preview(trigger=trigger, lookback=timedelta(hours=hours))
            except ValidationError as exc:
                errors = exc.message_dict if hasattr(exc, "error_dict") else {"trigger": exc.messages}
        document = trigger.as_document() | {"description": trigger.description} if trigger is not None else {}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "stored": stored,
            "title": f"Dry run: {trigger.name if trigger is not None else 'new trigger'}",
            "document_text": request.POST.get("document") or json.dumps(document, indent=2, sort_keys=True),
            "errors": errors,
            "hours": hours,
            "preview": preview,
            "summary": [(words, preview.count(verdict)) for verdict, words in VERDICTS] if preview else [],
            "outcomes": [
                (o, json.dumps(o.explanation, indent=2, sort_keys=True, default=str))
                for o in (preview.outcomes if preview else [])
            ],
        }
        return TemplateResponse(request, "admin/triggers/trigger/dry_run.html", context)

    def _dry_run_trigger(self, request: HttpRequest, stored: Trigger | None) -> tuple[Trigger | None, dict]:
        """The trigger to evaluate and any problems with it, from the request (never saved)."""
        if request.method != "POST":
            return (stored, {}) if stored is not None else (None, {"trigger": ["Post a trigger to evaluate."]})
        if "document" in request.POST:
            return trigger_from_document(request.POST["document"], stored)
        form = self.get_form(request, stored)(request.POST, instance=_copy(stored))
        if not form.is_valid():
            return form.instance, {name: list(messages) for name, messages in form.errors.items()}
        return form.save(commit=False), {}


#: The dry run's summary, in the order an admin reads it.
VERDICTS = (
    ("fire", "would fire"),
    ("defer", "deferred by quiet hours"),
    ("hold_out", "held back by the experiment"),
    ("suppress", "suppressed (caps, re-entry, nobody to send to)"),
    ("already_decided", "already decided before"),
)


def _hours(value: str | None) -> int:
    """The dry run's look-back in hours: 24 unless a whole number from 1 to 720 is given."""
    default, most = int(DEFAULT_LOOKBACK.total_seconds() // 3600), int(MAX_LOOKBACK.total_seconds() // 3600)
    return min(max(int(value), 1), most) if value and value.strip().isdigit() else default


def _copy(stored: Trigger | None) -> Trigger:
    """A copy the form may change (the stored row and its cached instance stay as they are)."""
    if stored is None:
        return Trigger()
    return Trigger.objects.get(pk=stored.pk)


def trigger_from_document(text: str, stored: Trigger | None) -> tuple[Trigger | None, dict[str, list[str]]]:
    """A trigger from the dry run's JSON document (its key, name, description and what it does)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, {"document": [f"Not valid JSON: {exc}."]}
    if not isinstance(document, dict):
        return None, {"document": ["Expected an object."]}
    allowed = {"key", "name", "description", *Trigger.BEHAVIOUR_FIELDS}
    extra = sorted(set(document) - allowed)
    if extra:
        return None, {"document": [f"Unexpected key(s): {', '.join(extra)}."]}
    trigger = _copy(stored)
    for name, value in document.items():
        setattr(trigger, name, value)
    return trigger, {}


@admin.register(Firing)
class FiringAdmin(ReadOnlyAdmin):
    list_display = (
        "decided_at", "trigger", "trigger_version", "workspace_key", "status", "reason", "arm", "recipient",
    )  # fmt: skip
    list_filter = ("status", "reason", "trigger", "experiment", "arm")
    list_select_related = ("trigger",)
    search_fields = ("=workspace_key", "=occurrence")
    search_help_text = "Exact workspace id or occurrence."
    date_hierarchy = "decided_at"
    show_full_result_count = False
    fields = (
        "trigger", "trigger_version", "workspace_key", "occurrence", "status", "reason", "decided_at", "fired_at",
        "audience", "recipient", "recipient_zone", "priority", "transactional", "experiment", "arm", "escalation_of",
        "goal", "goal_due_at", "goal_event_id", "actions_shown", "explanation_shown",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="Actions")
    def actions_shown(self, obj: Firing) -> str:
        return pretty_json(obj.actions)

    @admin.display(description="Explanation (why)")
    def explanation_shown(self, obj: Firing) -> str:
        return pretty_json(obj.explanation)


@admin.register(Timer)
class TimerAdmin(ReadOnlyAdmin):
    list_display = ("due_at", "kind", "trigger", "workspace_key", "status", "attempts", "outcome")
    list_filter = ("status", "kind", "trigger")
    list_select_related = ("trigger",)
    search_fields = ("=workspace_key",)
    search_help_text = "Exact workspace id."
    date_hierarchy = "due_at"
    show_full_result_count = False
    fields = (
        "trigger", "workspace_key", "kind", "occurrence", "due_at", "status", "firing", "outcome", "attempts",
        "last_error", "data_shown", "created_at", "done_at",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="Data")
    def data_shown(self, obj: Timer) -> str:
        return pretty_json(obj.data)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """Edit an experiment (each error on its field, with its path), start and stop it; its firings so far
    by arm. Arms are hashed from the salt, which is made once and never edited (it would reshuffle them)."""

    list_display = ("key", "trigger", "state", "shares", "version", "started_at", "stopped_at")
    list_filter = ("trigger",)
    list_select_related = ("trigger",)
    search_fields = ("key", "name", "trigger__key")
    readonly_fields = ("version", "salt", "started_at", "stopped_at", "state", "results", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("key", "name", "hypothesis", "trigger", "state", "version")}),
        ("Arms and goal", {"fields": ("arms", "goal", "goal_within_seconds", "salt")}),
        ("So far", {"fields": ("started_at", "stopped_at", "results")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )
    actions = ("start", "stop")

    @admin.display(description="State")
    def state(self, obj: Experiment) -> str:
        if obj.stopped_at:
            return "stopped"
        return "running" if obj.started_at else "draft (assigns nothing until started)"

    @admin.display(description="Shares")
    def shares(self, obj: Experiment) -> str:
        return ", ".join(f"{key} {share:.0%}" for key, share in arm_shares(obj).items())

    @admin.display(description="Firings by arm")
    def results(self, obj: Experiment) -> str:
        rows = experiment_arm_counts(experiment=obj) if obj.pk else []
        if not rows:
            return "None yet."
        head = format_html("<tr><th>arm</th><th>firings</th><th>fired</th><th>held back</th><th>other</th>"
                           "<th>goal reached</th><th>missed</th><th>pending</th></tr>")  # fmt: skip
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r["arm"], r["firings"], r["fired"], r["held_back"], r["other"], r["reached"], r["missed"],
              r["pending"]) for r in rows),
        )  # fmt: skip
        return format_html("<table>{}{}</table>", head, body)

    def get_readonly_fields(self, request: HttpRequest, obj: Experiment | None = None) -> tuple[str, ...]:
        if obj is not None and obj.started_at:  # which trigger it splits is fixed once it has assigned arms
            return (*self.readonly_fields, "trigger")
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Experiment, form: Any, change: bool) -> None:
        experiment_save(experiment=obj)

    def has_delete_permission(self, request: HttpRequest, obj: Experiment | None = None) -> bool:
        return False  # its firings are its results: stop it instead

    @admin.action(description="Start the selected experiments now", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(request, queryset, experiment_start, "started")

    @admin.action(description="Stop the selected experiments now", permissions=["change"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(request, queryset, experiment_stop, "stopped")

    def _each(self, request: HttpRequest, queryset: QuerySet[Experiment], service: Any, done: str) -> None:
        for experiment in queryset.select_related("trigger"):
            try:
                service(experiment=experiment)
            except ValidationError as exc:
                self.message_user(request, f"{experiment.key}: {'; '.join(exc.messages)}", messages.WARNING)
            else:
                self.message_user(request, f"{experiment.key}: {done}.", messages.SUCCESS)
