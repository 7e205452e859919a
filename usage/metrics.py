"""A workspace's usage profile: named, documented metrics over day windows (docs/metrics.md).

`METRICS` is the one registry. Two evaluations give the same values: `profiles_for` (a few workspaces,
on their events) and `profiles_all` (every workspace, chunk by chunk). Both run the same aggregates
(`usage.metrics_sql`, one GROUP BY workspace per table) and the same `derive` for trends and ratios.

Windows are whole days in the workspace's time zone ending today: an n-day window is
`[today-(n-1), today]`. "Today" is counted in the workspace's zone (a mapping passed in, "UTC" when
unknown). Usage and plan-limit hits are rolled up per local day and tickets keep their timestamps, so
every window is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from usage import metrics_sql as sql
from usage.metrics_rollups import RollupEvent, plan_limits_rollup, tickets_apply, zone_named
from usage.models import PlanLimitDaily, SupportTicket, UsageDaily
from workspaces.models import Workspace

__all__ = [
    "METRICS",
    "USAGE_WINDOW_DAYS",
    "Metric",
    "RollupEvent",
    "data_ahead",
    "derive",
    "plan_limits_rollup",
    "profiles_all",
    "profiles_for",
    "tickets_apply",
    "today_in",
    "windows_hold_data",
]

Value = int | float | None
Profile = dict[str, Value]
DEFAULT_CHUNK = 1000
# The bulk pass's chunk: a chunk's rows sort within PostgreSQL's default work_mem (4 MB) at 90 days of
# a few features; measured 1.5-2x faster than 1,000 at 20,000 workspaces.
BULK_CHUNK = 250


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str
    window_days: int | None  # None: a state now (open tickets) or a distance in days, not a window


def _products() -> tuple[str, ...]:
    products = tuple(settings.USAGE_PRODUCTS)
    for product in products:
        if not re.fullmatch(r"[a-z0-9_]{1,40}", product):
            raise ImproperlyConfigured(f"USAGE_PRODUCTS: {product!r} is not a lower-case name (a-z, 0-9, _).")
    return products


PRODUCTS = _products()

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("active_days_7d", "Days with any usage event.", "days", 7),
        Metric("active_days_30d", "Days with any usage event.", "days", 30),
        Metric("sessions_7d", "Sessions: one user active on one day (events that name a user).", "sessions", 7),
        Metric("sessions_28d", "Sessions: one user active on one day (events that name a user).", "sessions", 28),
        Metric(
            "sessions_trend_14d",
            "Sessions in the last 14 days against the 14 before, as a relative change; empty when the "
            "14 before had none.",
            "ratio",
            28,
        ),
        Metric("duration_7d", "Sum of the events' duration_seconds.", "seconds", 7),
        Metric("duration_28d", "Sum of the events' duration_seconds.", "seconds", 28),
        Metric(
            "duration_trend_14d",
            "Duration in the last 14 days against the 14 before, as a relative change; empty when the "
            "14 before had none.",
            "ratio",
            28,
        ),
        Metric("features_30d", "Distinct features used (a feature is its name within its product).", "features", 30),
        *(
            Metric(sql.depth_alias(p), f"Distinct features used in the product {p!r}.", "features", 30)
            for p in PRODUCTS
        ),
        Metric("products_used_30d", "Distinct products named by usage events.", "products", 30),
        Metric(
            "api_share_30d",
            'Share of usage events whose product is "api"; empty without usage.',
            "ratio",
            30,
        ),
        Metric(
            "integration_depth_30d",
            'Distinct integrations used successfully: features named "integration.<name>" with at least '
            "one event that was not an error.",
            "integrations",
            30,
        ),
        Metric("plan_limit_hits_30d", "Times a plan limit was reached (plan.limit_reached).", "hits", 30),
        Metric("errors_7d", 'Usage events with outcome "error".', "events", 7),
        Metric("open_tickets", "Support tickets opened and not resolved now.", "tickets", None),
        Metric("tickets_14d", "Support tickets opened.", "tickets", 14),
        Metric("tickets_baseline_60d", "Support tickets opened in the 60 days before the last 14.", "tickets", 60),
        Metric(
            "ticket_ratio_14d",
            "Tickets of the last 14 days against the 60-day baseline's rate for 14 days (1.0: as usual); "
            "empty when the baseline had none.",
            "ratio",
            74,
        ),
        Metric("seats_30d", "Distinct users (user_email) with usage.", "users", 30),
        Metric(
            "days_since_trial_start",
            "Days from the trial's start day to today; empty without a trial start.",
            "days",
            None,
        ),
        Metric(
            "days_since_last_active",
            "Days from the last day with usage to today (0: active today); empty when never active.",
            "days",
            None,
        ),
        Metric("last_active_at", "Time of the last usage event up to today, in Unix seconds.", "unix seconds", None),
    ]
}


def profiles_for(
    workspace_keys: Iterable[str],
    *,
    now: datetime,
    zones: Mapping[str, str] | None = None,
    trials: Mapping[str, datetime | None] | None = None,
) -> dict[str, Profile]:
    """Evaluate these workspaces (one or a few, on their events); an unknown key gets an empty profile.

    `trials`: each workspace's trial_started_at when the caller has the workspaces loaded (else read here).
    """
    keys = sorted(set(workspace_keys))
    profiles: dict[str, Profile] = {}
    for start in range(0, len(keys), DEFAULT_CHUNK):
        profiles.update(_evaluate(keys[start : start + DEFAULT_CHUNK], now=now, zones=zones or {}, trials=trials))
    return profiles


def profiles_all(
    *, now: datetime, zones: Mapping[str, str] | None = None, chunk: int = BULK_CHUNK
) -> Iterator[dict[str, Profile]]:
    """Evaluate every workspace known to any table, `chunk` at a time in key order: memory stays flat.

    Yields one dict per chunk (workspace key → profile), ready to be written in bulk.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    after = ""
    while keys := _keys_after(after, chunk):
        yield _evaluate(keys, now=now, zones=zones or {})
        after = keys[-1]


def _keys_after(after: str, chunk: int) -> list[str]:
    """The next `chunk` workspace keys after `after`, from every table that names workspaces.

    Each table gives its own next `chunk` keys (an index scan); the first `chunk` of their union are
    complete, since no table can hide a key below the largest it returned.
    """
    sources = [
        (UsageDaily.objects, "workspace_key"),
        (SupportTicket.objects, "workspace_key"),
        (PlanLimitDaily.objects, "workspace_key"),
        (Workspace.objects, "workspace_id"),
    ]
    keys: set[str] = set()
    for manager, field in sources:
        rows = manager.filter(**{f"{field}__gt": after}).order_by(field).values_list(field, flat=True)
        keys.update(rows.distinct()[:chunk])
    return sorted(keys)[:chunk]


def _evaluate(
    keys: list[str],
    *,
    now: datetime,
    zones: Mapping[str, str],
    trials: Mapping[str, datetime | None] | None = None,
) -> dict[str, Profile]:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    edges: dict[str, tuple[Any, ...]] = {}  # per zone name: a chunk has a few zones, not a zone per workspace
    bounds = []
    for key in keys:
        name = zones.get(key) or "UTC"
        if name not in edges:
            edges[name] = astuple(_bounds("", now, zone_named(name)))[1:]
        bounds.append(sql.Bounds(key, *edges[name]))
    daily = sql.usage_daily(bounds, PRODUCTS)
    idle = [bound for bound in bounds if daily.get(bound.key, {}).get("last_active_day") is None]
    for key, last in sql.last_active(idle).items():
        daily.setdefault(key, {}).update(last)
    users = sql.usage_users(bounds)
    tickets = sql.tickets(bounds)
    limits = sql.plan_limits(bounds)
    if trials is None:
        trials = dict(Workspace.objects.filter(workspace_id__in=keys).values_list("workspace_id", "trial_started_at"))
    return {
        bound.key: derive(
            {
                **daily.get(bound.key, {}),
                **users.get(bound.key, {}),
                **tickets.get(bound.key, {}),
                **limits.get(bound.key, {}),
            },
            today=bound.today,
            zone=zone_of(bound.key, zones),
            trial_started_at=trials.get(bound.key),
        )
        for bound in bounds
    }


#: The longest window over usage rows (active days, features, seats); a workspace last active longer ago than
#: this has nothing left in any usage window.
USAGE_WINDOW_DAYS = 30
#: The metrics over the ticket and plan-limit rows with a window, each empty when its window holds no row.
_ROW_WINDOWS = ("tickets_14d", "tickets_baseline_60d", "plan_limit_hits_30d")


def windows_hold_data(profile: Mapping[str, Any]) -> bool:
    """Whether time alone can still change this profile's windows: it was active within the last
    USAGE_WINDOW_DAYS days, or a ticket was opened within its 14-day window or the 60-day baseline before it,
    or a plan limit was hit within 30 days. When none holds, every window stays as it is until an event comes,
    or until a row already stored with a later date does (`data_ahead`)."""
    since = profile.get("days_since_last_active")
    return (since is not None and since < USAGE_WINDOW_DAYS) or any(profile.get(name) for name in _ROW_WINDOWS)


def data_ahead(workspace_keys: Iterable[str], *, now: datetime, zones: Mapping[str, str]) -> dict[str, date]:
    """{workspace key: the first local day on which rows it has stored already, dated ahead of now (usage and
    plan-limit hits on a later day, a ticket opened or resolved later, perhaps today), enter its windows}, for
    those that have any."""
    bounds = [_bounds(key, now, zone_of(key, zones)) for key in sorted(set(workspace_keys))]
    found: dict[str, date] = {}
    for key, (day, limit_day, instant) in sql.data_ahead(bounds).items():
        zone = zone_of(key, zones)
        days = [d for d in (day, limit_day) if d is not None]
        if instant is not None:
            days.append(instant.astimezone(zone).date())
        found[key] = min(days)
    return found


def derive(aggregates: Mapping[str, Any], *, today: date, zone: ZoneInfo, trial_started_at: datetime | None) -> Profile:
    """The profile from one workspace's aggregates (missing: no rows): counts, trends, ratios, distances."""

    def number(name: str) -> int:
        return int(aggregates.get(name) or 0)

    def amount(name: str) -> float:
        return float(aggregates.get(name) or 0.0)

    profile: Profile = {}
    for name in ("active_days_7d", "active_days_30d", "sessions_7d", "sessions_28d"):
        profile[name] = number(name)
    profile["sessions_trend_14d"] = _change(number("sessions_this_14d"), number("sessions_previous_14d"))
    profile["duration_7d"] = amount("duration_7d")
    profile["duration_28d"] = amount("duration_28d")
    profile["duration_trend_14d"] = _change(amount("duration_this_14d"), amount("duration_previous_14d"))
    profile["features_30d"] = number("features_30d")
    for product in PRODUCTS:
        profile[sql.depth_alias(product)] = number(sql.depth_alias(product))
    profile["products_used_30d"] = number("products_used_30d")
    events = number("events_30d")
    profile["api_share_30d"] = number("api_events_30d") / events if events else None
    for name in ("integration_depth_30d", "plan_limit_hits_30d", "errors_7d", "open_tickets", "tickets_14d"):
        profile[name] = number(name)
    baseline = number("tickets_baseline_60d")
    profile["tickets_baseline_60d"] = baseline
    profile["ticket_ratio_14d"] = number("tickets_14d") / (baseline * 14 / 60) if baseline else None
    profile["seats_30d"] = number("seats_30d")
    profile["days_since_trial_start"] = (
        (today - trial_started_at.astimezone(zone).date()).days if trial_started_at else None
    )
    last_day = sql.as_date(aggregates.get("last_active_day"))
    profile["days_since_last_active"] = (today - last_day).days if last_day else None
    last_at = aggregates.get("last_active_at")  # Unix seconds already, or a time (SQLite's text, last_active's)
    if last_at is not None and not isinstance(last_at, int):
        last_at = int(sql.as_datetime(last_at).timestamp())
    profile["last_active_at"] = last_at
    return profile


def _change(current: float, previous: float) -> float | None:
    return (current - previous) / previous if previous else None


def zone_of(key: str, zones: Mapping[str, str]) -> ZoneInfo:
    return zone_named(zones.get(key) or "UTC")


def today_in(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local day, in UTC (a midnight skipped by DST starts at the transition)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _bounds(key: str, now: datetime, zone: ZoneInfo) -> sql.Bounds:
    today = today_in(now, zone)
    return sql.Bounds(
        key=key,
        today=today,
        d7=today - timedelta(days=6),
        d14=today - timedelta(days=13),
        d28=today - timedelta(days=27),
        d30=today - timedelta(days=29),
        now=now.astimezone(UTC),
        since_14d=day_start(today - timedelta(days=13), zone),
        since_74d=day_start(today - timedelta(days=73), zone),
        until=day_start(today + timedelta(days=1), zone),
    )
