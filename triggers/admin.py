"""Admin for the trigger engine: triggers edited as data (validated by triggers/spec.py, versioned by
`trigger_save`), firings and timers read-only with their explanation. Also the read-only usage rollup
(its rows are derived from events, never edited by hand), registered here since it moved to usage.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from triggers.experiments import arm_shares, experiment_save, experiment_start, experiment_stop
from triggers.models import Experiment, Firing, Timer, Trigger
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
    readonly_fields = ("version", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("key", "name", "description", "enabled", "priority", "version")}),
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
