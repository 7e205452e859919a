"""The profile's two evaluations agree with each other and with a plain reference over raw events.

Random histories (usage, tickets, plan-limit hits, trial starts over ~120 days, in several zones) go
through the real rollups; then, at random clock positions, `profiles_for`, `profiles_all` (in random
chunks) and `reference` below (straight from the raw events) must give the same profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Event
from tests.factories import EventFactory, WorkspaceFactory
from usage.metrics import METRICS, PRODUCTS, RollupEvent, plan_limits_rollup, profiles_all, profiles_for, tickets_apply
from usage.models import PlanLimitDaily, SupportTicket, UsageDaily, UsageDailyUser
from usage.rollups import usage_rollup
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

START = datetime(2026, 8, 1, tzinfo=UTC)
SPAN = 120 * 86400
KEYS = ["ws_a", "ws_b", "ws_c", "ws_d"]
ZONES = ["UTC", "Europe/Berlin", "America/Los_Angeles", "Pacific/Kiritimati", "Asia/Kolkata", "America/Santiago"]


@dataclass(frozen=True)
class Use:
    key: str
    at: datetime
    feature: str
    product: str
    user: str
    duration: float
    error: bool


@dataclass(frozen=True)
class TicketEvent:
    key: str
    ticket: str
    opened: bool
    at: datetime
    priority: str
    satisfaction: int | None


@dataclass(frozen=True)
class Hit:
    key: str
    limit: str
    at: datetime


def moment(seconds: int) -> datetime:
    return START + timedelta(seconds=seconds)


times = st.integers(0, SPAN).map(moment)
uses = st.builds(
    Use,
    key=st.sampled_from(KEYS),
    at=times,
    feature=st.sampled_from(["sign", "export", "integration.slack", "integration.hubspot", "Integration.x"]),
    product=st.sampled_from(["esign", "admin", "api", "sdk", "", "mobile"]),
    user=st.sampled_from(["", "ann@acme.io", "Ann@Acme.io", "bob@acme.io", "cy@acme.io"]),
    duration=st.integers(0, 40).map(lambda quarters: quarters / 4),
    error=st.booleans(),
)
ticket_events = st.builds(
    TicketEvent,
    key=st.sampled_from(KEYS),
    ticket=st.sampled_from(["t1", "t2", "t3"]),
    opened=st.booleans(),
    at=times,
    priority=st.sampled_from(["low", "normal", "urgent"]),
    satisfaction=st.none() | st.integers(1, 5),
)
hits = st.builds(Hit, key=st.sampled_from(KEYS), limit=st.sampled_from(["seats", "api_calls"]), at=times)
histories = st.fixed_dictionaries(
    {
        "uses": st.lists(uses, max_size=50),
        "tickets": st.lists(ticket_events, max_size=12),
        "hits": st.lists(hits, max_size=8),
        "trials": st.dictionaries(st.sampled_from(KEYS), times, max_size=3),
        "zones": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(ZONES), max_size=4),
    }
)
uniform_clock = st.integers(-2 * 86400, SPAN + 3 * 86400).map(moment)
near = st.integers(-75 * 86400, 75 * 86400).map(lambda seconds: timedelta(seconds=seconds))


def clocks(history: dict[str, Any]) -> st.SearchStrategy[list[datetime]]:
    """Clock positions, most near the history's own events so that every window edge gets crossed."""
    moments = [u.at for u in history["uses"]] + [t.at for t in history["tickets"]] + [h.at for h in history["hits"]]
    if not moments:
        return st.lists(uniform_clock, min_size=1, max_size=3)
    nearby = st.builds(lambda at, shift: at + shift, st.sampled_from(moments), near)
    return st.lists(nearby | uniform_clock, min_size=1, max_size=4)


def store(history: dict[str, Any]) -> None:
    """Fill the tables through the real paths: stored usage events rolled up, tickets, limits, workspaces."""
    for model in (Event, UsageDaily, UsageDailyUser, SupportTicket, PlanLimitDaily, Workspace):
        model.objects.all().delete()
    for key in sorted(set(history["zones"]) | set(history["trials"])):  # first: usage counts on local days
        WorkspaceFactory(
            workspace_id=key, timezone=history["zones"].get(key, ""), trial_started_at=history["trials"].get(key)
        )
    for use in history["uses"]:
        data: dict[str, Any] = {"workspace_id": use.key, "feature": use.feature, "duration_seconds": use.duration}
        data.update({"outcome": "error" if use.error else "success"})
        if use.product:
            data["product"] = use.product
        if use.user:
            data["user_email"] = use.user
        EventFactory(
            type="usage.recorded",
            occurred_at=use.at,
            workspace_key=use.key,
            payload={"type": "usage.recorded", "timestamp": use.at.isoformat(), "data": data},
        )
    assert usage_rollup() == len(history["uses"])
    tickets_apply(
        RollupEvent(t.key, t.at, {"ticket_id": t.ticket, "priority": t.priority}, type="support.ticket_opened")
        if t.opened
        else RollupEvent(
            t.key, t.at, {"ticket_id": t.ticket, "satisfaction": t.satisfaction}, type="support.ticket_resolved"
        )
        for t in history["tickets"]
    )
    plan_limits_rollup(
        (RollupEvent(h.key, h.at, {"limit": h.limit}) for h in history["hits"]),
        zones=history["zones"],
    )


def reference(key: str, history: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The profile computed straight from the raw events (every day is the workspace's local day)."""
    zone = ZoneInfo(history["zones"].get(key, "UTC"))
    today = now.astimezone(zone).date()

    def within(day: date, first: int, last: int = 0) -> bool:
        return today - timedelta(days=first) <= day <= today - timedelta(days=last)

    def used(first: int, last: int = 0) -> list[Use]:
        return [u for u in history["uses"] if u.key == key and within(u.at.astimezone(zone).date(), first, last)]

    def sessions(first: int, last: int = 0) -> int:
        return len({(u.at.astimezone(zone).date(), u.user.lower()) for u in used(first, last) if u.user})

    def change(current: float, previous: float) -> float | None:
        return (current - previous) / previous if previous else None

    past = [u for u in history["uses"] if u.key == key and u.at.astimezone(zone).date() <= today]
    opened, resolved = ticket_times(key, history["tickets"])
    tickets_14 = sum(1 for at in opened.values() if within(at.astimezone(zone).date(), 13))
    baseline = sum(1 for at in opened.values() if within(at.astimezone(zone).date(), 73, 14))
    month = used(29)
    trial = history["trials"].get(key)
    last = max((u.at for u in past), default=None)
    profile = {
        "active_days_7d": len({u.at.astimezone(zone).date() for u in used(6)}),
        "active_days_30d": len({u.at.astimezone(zone).date() for u in month}),
        "sessions_7d": sessions(6),
        "sessions_28d": sessions(27),
        "sessions_trend_14d": change(sessions(13), sessions(27, 14)),
        "duration_7d": sum(u.duration for u in used(6)),
        "duration_28d": sum(u.duration for u in used(27)),
        "duration_trend_14d": change(sum(u.duration for u in used(13)), sum(u.duration for u in used(27, 14))),
        "features_30d": len({(u.product, u.feature) for u in month}),
        **{f"depth_{p}_30d": len({u.feature for u in month if u.product == p}) for p in PRODUCTS},
        "products_used_30d": len({u.product for u in month if u.product}),
        "api_share_30d": sum(u.product == "api" for u in month) / len(month) if month else None,
        "integration_depth_30d": len(
            {u.feature for u in month if u.feature.startswith("integration.") and not u.error}
        ),
        "plan_limit_hits_30d": sum(
            1 for h in history["hits"] if h.key == key and within(h.at.astimezone(zone).date(), 29)
        ),
        "errors_7d": sum(u.error for u in used(6)),
        "open_tickets": sum(1 for t, at in opened.items() if at <= now and (t not in resolved or resolved[t] > now)),
        "tickets_14d": tickets_14,
        "tickets_baseline_60d": baseline,
        "ticket_ratio_14d": tickets_14 / (baseline * 14 / 60) if baseline else None,
        "seats_30d": len({u.user.lower() for u in month if u.user}),
        "days_since_trial_start": (today - trial.astimezone(zone).date()).days if trial else None,
        "days_since_last_active": (today - max(u.at.astimezone(zone).date() for u in past)).days if past else None,
        "last_active_at": int(last.timestamp()) if last else None,
    }
    assert list(profile) == list(METRICS)
    return profile


def ticket_times(key: str, events: Iterable[TicketEvent]) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """Each ticket's first opening and last resolution."""
    opened: dict[str, datetime] = {}
    resolved: dict[str, datetime] = {}
    for event in events:
        if event.key != key:
            continue
        if event.opened:
            opened[event.ticket] = min(opened.get(event.ticket, event.at), event.at)
        else:
            resolved[event.ticket] = max(resolved.get(event.ticket, event.at), event.at)
    return opened, resolved


def known_keys(history: dict[str, Any]) -> set[str]:
    return (
        {u.key for u in history["uses"]}
        | {t.key for t in history["tickets"]}
        | {h.key for h in history["hits"]}
        | set(history["trials"])
        | set(history["zones"])  # a workspace with a zone is stored, so the bulk pass visits it
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(history=histories, chunk=st.integers(1, 4), data=st.data())
def test_both_evaluations_equal_the_reference(history: dict[str, Any], chunk: int, data: st.DataObject):
    # given
    store(history)
    nows = data.draw(clocks(history))
    for now in nows:
        # when
        bulk = {
            key: profile
            for part in profiles_all(now=now, zones=history["zones"], chunk=chunk)
            for key, profile in part.items()
        }
        single = profiles_for(KEYS, now=now, zones=history["zones"])
        # then
        assert set(bulk) == known_keys(history)
        assert {key: single[key] for key in bulk} == bulk
        for key in KEYS:
            assert single[key] == reference(key, history, now), key
