"""Reads of behaviour state for pages, the admin and the API: previews, members, history."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from usage.conditions import FIELDS, Facts, condition_explain, condition_holds
from usage.models import Cohort, CohortMembership, Profile, Stage, StagePeriod
from workspaces.models import Workspace

PREVIEW_SAMPLE = 10


@dataclass
class Preview:
    """How a condition splits the evaluated workspaces now (from their latest profiles)."""

    evaluated: int = 0
    matching: int = 0
    sample: list[str] = field(default_factory=list)
    explained: dict[str, Any] | None = None  # for one chosen workspace: every condition's value and verdict
    explained_key: str = ""


def _facts_of_profiles(chunk: int = 2000) -> Iterator[tuple[str, Facts]]:
    """Every profile with its workspace's lifecycle fields, in chunks (memory stays flat)."""
    last = ""
    while True:
        rows = list(
            Profile.objects.filter(workspace_key__gt=last)
            .order_by("workspace_key")
            .values_list("workspace_key", "metrics")[:chunk]
        )
        if not rows:
            return
        fields = {
            row["workspace_id"]: row
            for row in Workspace.objects.filter(workspace_id__in=[key for key, _ in rows]).values(
                "workspace_id", *FIELDS
            )
        }
        memberships = _current_cohorts([key for key, _ in rows])
        for key, metrics in rows:
            record = fields.get(key, {})
            yield (
                key,
                Facts(metrics or {}, {name: record.get(name) for name in FIELDS}, memberships.get(key, frozenset())),
            )
        last = rows[-1][0]


def _current_cohorts(keys: list[str]) -> dict[str, frozenset[str]]:
    return {key: frozenset(entry["key"] for entry in entries) for key, entries in cohorts_of(keys).items()}


def condition_preview(condition: dict[str, Any], *, workspace_key: str = "") -> Preview:
    """How many workspaces a (valid) condition matches now, a sample, and one workspace explained."""
    preview = Preview()
    for key, facts in _facts_of_profiles():
        preview.evaluated += 1
        if condition_holds(condition, facts):
            preview.matching += 1
            if len(preview.sample) < PREVIEW_SAMPLE:
                preview.sample.append(key)
        if key == workspace_key:
            preview.explained, preview.explained_key = condition_explain(condition, facts), key
    return preview


def members_over_time(
    model: type[CohortMembership] | type[StagePeriod], *, days: int = 30, now: datetime | None = None, **filters: Any
) -> list[tuple[date, int]]:
    """(day, members at the end of that UTC day) for the last `days` days: one COUNT per day."""
    now = now or timezone.now()
    today = now.date()
    counts = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        end = min(datetime.combine(day + timedelta(days=1), time(0), tzinfo=now.tzinfo), now)
        members = model.objects.filter(**filters, entered_at__lte=end).filter(
            Q(exited_at__isnull=True) | Q(exited_at__gt=end)
        )
        counts.append((day, members.count()))
    return counts


def workspace_behaviour(workspace_key: str) -> dict[str, Any]:
    """A workspace's profile, current cohorts and stage, and their history with the why of each step."""
    profile = Profile.objects.select_related("stage").filter(workspace_key=workspace_key).first()
    memberships = list(CohortMembership.objects.filter(workspace_key=workspace_key).select_related("cohort"))
    periods = list(StagePeriod.objects.filter(workspace_key=workspace_key).select_related("stage", "previous"))
    return {
        "profile": profile,
        "cohorts": [row for row in memberships if row.exited_at is None],
        "cohort_history": memberships,
        "stage_history": periods,
    }


def stages_of(workspace_keys: list[str]) -> dict[str, str]:
    """The current lifecycle stage key of each workspace that has one (one query)."""
    rows = Profile.objects.filter(workspace_key__in=workspace_keys, stage__isnull=False)
    return dict(rows.values_list("workspace_key", "stage__key"))


def cohorts_of(workspace_keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The cohorts each workspace is in now, with when it entered, by key order (one query)."""
    found: dict[str, list[dict[str, Any]]] = {}
    rows = (
        CohortMembership.objects.filter(workspace_key__in=workspace_keys, exited_at__isnull=True)
        .order_by("cohort__key")
        .values_list("workspace_key", "cohort__key", "entered_at")
    )
    for key, cohort, entered_at in rows:
        found.setdefault(key, []).append({"key": cohort, "entered_at": entered_at})
    return found


def cohort_counts(workspace_keys: QuerySet[Workspace] | None = None) -> list[dict[str, Any]]:
    """Every cohort with its members now; `workspace_keys`: count only these workspaces (a rep's)."""
    members = Q(memberships__exited_at__isnull=True)
    if workspace_keys is not None:
        members &= Q(memberships__workspace_key__in=workspace_keys.values("workspace_id"))
    cohorts = Cohort.objects.order_by("key").annotate(members=Count("memberships", filter=members))
    return [{"key": cohort.key, "name": cohort.name, "members": cohort.members} for cohort in cohorts]


OP_WORDS = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠", "in": "is one of", "not_in": "is none of"}


def explanation_lines(node: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """A stored explanation (`condition_explain`) as indented lines a page can list: each group and leaf
    in words, with the value it was decided on and whether it held."""
    result = bool(node.get("result"))
    for group, words in (("all", "all of"), ("any", "any of")):
        if group in node:
            lines = [{"depth": depth, "text": words, "result": result, "group": True}]
            for child in node[group]:
                lines += explanation_lines(child, depth + 1)
            return lines
    if "not" in node:
        return [
            {"depth": depth, "text": "not", "result": result, "group": True},
            *explanation_lines(node["not"], depth + 1),
        ]
    if "metric" in node:
        text = f"{node['metric'].replace('_', ' ')} {OP_WORDS.get(node['op'], node['op'])} {node['value']}"
    elif "field" in node:
        value = ", ".join(node["value"]) if isinstance(node["value"], list) else node["value"]
        text = f"{node['field'].replace('_', ' ')} {OP_WORDS.get(node['op'], node['op'])} {value}"
    elif "product" in node:
        text = f"used {node['product']} in the last 30 days"
    else:
        text = f"in the cohort {node.get('cohort')}"
    actual = node.get("actual")
    shown = "no value" if actual is None else (", ".join(actual) if isinstance(actual, list) else actual)
    return [{"depth": depth, "text": text, "actual": shown, "result": result, "group": False}]


def metric_rows(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The profile's metrics with their units and descriptions, in the registry's order."""
    from usage.metrics import METRICS

    return [
        {"name": name, "value": values.get(name), "unit": metric.unit, "description": metric.description}
        for name, metric in METRICS.items()
    ]


def behaviour_panel(workspace: Workspace, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the workspace page shows about behaviour: the 30-day usage chart and its table, the
    metrics now, the cohorts and stage with their history, each step with its "why"."""
    from usage.charts import daily_usage, daily_usage_figure
    from usage.metrics import profiles_for

    now = now or timezone.now()
    key = workspace.workspace_id
    usage = daily_usage(key, now=now, zone_name=workspace.timezone)
    metrics = profiles_for([key], now=now, zones={key: workspace.timezone or "UTC"}).get(key, {})
    state = workspace_behaviour(key)
    periods = [
        {"row": period, "why": explanation_lines(period.entered_why.get("condition", {}))}
        for period in state["stage_history"]
    ]
    memberships = [
        {
            "row": row,
            "why": explanation_lines(row.entered_why.get("condition", {})),
            "left_why": explanation_lines(row.exited_why.get("condition", {})) if row.exited_at else [],
        }
        for row in state["cohort_history"]
    ]
    return {
        "profile": state["profile"],
        "usage": usage,
        "usage_figure": None if usage.empty else daily_usage_figure(usage),
        "usage_products": sorted(usage.events),
        "metrics": metric_rows(metrics),
        "stage_periods": periods,
        "cohorts_now": [entry for entry in memberships if entry["row"].exited_at is None],
        "cohorts_past": [entry for entry in memberships if entry["row"].exited_at is not None],
    }


def members_of_cohort(cohort_key: str) -> QuerySet[CohortMembership]:
    """The workspace keys in a cohort now (a subquery)."""
    return CohortMembership.objects.filter(cohort__key=cohort_key, exited_at__isnull=True).values("workspace_key")


def in_stage(stage_key: str) -> QuerySet[Profile]:
    """The workspace keys in a stage now (a subquery)."""
    return Profile.objects.filter(stage__key=stage_key).values("workspace_key")


def with_behaviour(workspaces: QuerySet[Workspace]) -> QuerySet[Workspace]:
    """Annotate each workspace's stage name (`stage_name`) and its last usage (`last_active`)."""
    from usage.models import UsageDaily

    profile = Profile.objects.filter(workspace_key=OuterRef("workspace_id"))
    last = UsageDaily.objects.filter(workspace_key=OuterRef("workspace_id")).order_by("-last_seen_at")
    return workspaces.annotate(
        stage_name=Subquery(profile.values("stage__name")[:1]),
        last_active=Subquery(last.values("last_seen_at")[:1]),
    )


def stage_choices() -> list[tuple[str, str]]:
    return list(Stage.objects.filter(enabled=True).order_by("order").values_list("key", "name"))


def cohort_choices() -> list[tuple[str, str]]:
    return list(Cohort.objects.filter(enabled=True).order_by("name").values_list("key", "name"))
